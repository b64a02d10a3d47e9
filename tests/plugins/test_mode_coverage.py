"""`mode-coverage` against a NumPy reference, on perfect and collapsed generators, and merged across ranks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import ganforge_plugins.metrics.mode_coverage as mc
from ganforge import DataInfo, GANMetric
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.data.mixtures import gaussian_grid, gaussian_ring
from ganforge_plugins.metrics.mode_coverage import ModeCoverage, mode_coverage


@pytest.fixture(scope="module")
def registry():
    return load_registry(strict=False, warn=False)


@pytest.fixture(scope="module")
def ring():
    return gaussian_ring(num_samples=10)


def reference(x: np.ndarray, modes: np.ndarray, std: float, t: float = 3.0) -> dict[str, float]:
    """The protocol written out directly in float64 NumPy."""
    d = np.sqrt(((x[:, None, :] - modes[None, :, :]) ** 2).sum(-1))
    nearest = d.argmin(1)
    hq = d[np.arange(len(x)), nearest] <= t * std
    counts = np.bincount(nearest[hq], minlength=len(modes))
    k = len(modes)
    if counts.sum():
        p = counts / counts.sum()
        kl = float(sum(pi * math.log(pi * k) for pi in p if pi > 0))
        dominant, share = float(np.argmax(counts)), float(p.max())  # np.argmax: first maximum
    else:
        kl = dominant = share = math.nan
    return {"modes": float((counts > 0).sum()), "high_quality": hq.mean(), "kl_uniform": kl,
            "dominant_mode": dominant, "dominant_share": share, "num_modes": float(k),
            **{f"share_{i}": c / len(x) for i, c in enumerate(counts)}}


def evaluate(metric: ModeCoverage, x: torch.Tensor, batch: int = 500) -> dict[str, float]:
    metric.reset()
    for b in x.split(batch):
        metric.update(b)
    return metric.compute()


def sample_mixture(modes: torch.Tensor, std: float, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(modes), (n,), generator=g)
    return modes[idx] + std * torch.randn(n, modes.shape[1], generator=g)


def test_is_a_torchmetrics_and_gan_metric(ring) -> None:
    m = mode_coverage(ring.info)
    assert isinstance(m, GANMetric) and isinstance(m, torch.nn.Module)
    assert m.needs_real is False and m.num_samples == 2500
    assert set(m._defaults) == {"hq_counts", "total"}
    assert all(m._reductions[k] is not None for k in m._defaults)
    assert m.protocol() == {
        "metric": "mode-coverage",
        "num_samples": 2500,
        "num_modes": 8,
        "mode_std": 0.01,
        "threshold_std": 3.0,
        "threshold": pytest.approx(0.03),
        "distance": "euclidean",
        "assignment": "nearest mode; high-quality if distance <= threshold",
        "kl": "KL(p_hq || uniform), nats, 0*log0=0",
        "dominant": "mode with the most high-quality samples, lowest index on a tie; share of high-quality samples",
        "per_mode": False,
        "dtype": "float32",
        "dataset": "gaussian-ring",
    }


@pytest.mark.parametrize("spread", [1.0, 2.0, 4.0])
def test_matches_numpy_reference(ring, spread: float) -> None:
    # samples spread to 1, 2 and 4 σ: from nearly all high-quality to mostly not
    x = sample_mixture(ring.info.modes, 0.01 * spread, 3000, seed=3)
    x[:50] = torch.rand(50, 2) * 3 - 1.5  # some far-off samples
    got = evaluate(mode_coverage(ring.info), x)
    want = reference(x.double().numpy(), ring.info.modes.double().numpy(), 0.01)
    assert got["modes"] == want["modes"] and got["num_modes"] == 8.0
    assert got["high_quality"] == pytest.approx(want["high_quality"], abs=1e-12)
    assert got["kl_uniform"] == pytest.approx(want["kl_uniform"], rel=1e-9, abs=1e-12)
    assert got["dominant_mode"] == want["dominant_mode"]
    assert got["dominant_share"] == pytest.approx(want["dominant_share"], rel=1e-12)
    assert all(isinstance(v, float) for v in got.values())
    assert not any(k.startswith("share_") for k in got)  # per_mode is off by default
    hist = evaluate(mode_coverage(ring.info, per_mode=True), x)
    assert {k: v for k, v in hist.items() if not k.startswith("share_")} == got
    for k in range(8):
        assert hist[f"share_{k}"] == pytest.approx(want[f"share_{k}"], rel=1e-12, abs=1e-15)
    assert sum(hist[f"share_{k}"] for k in range(8)) == pytest.approx(got["high_quality"], rel=1e-12)


def test_perfect_generator_ring() -> None:
    ds = gaussian_ring(num_samples=10)
    x = sample_mixture(ds.info.modes, 0.01, 40_000, seed=0)
    got = evaluate(mode_coverage(ds.info), x, batch=4096)
    assert got["modes"] == 8.0
    # the 3σ disc of a 2-D Gaussian holds 1 - e^{-4.5} ≈ 98.89 % (binomial se ≈ 0.05 % here)
    assert got["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert got["kl_uniform"] < 0.002


def test_perfect_generator_grid() -> None:
    ds = gaussian_grid(num_samples=10)
    x = sample_mixture(ds.info.modes, 0.05, 5000, seed=1)
    got = evaluate(mode_coverage(ds.info), x)
    assert got["modes"] == 25.0 and got["num_modes"] == 25.0
    assert got["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)


def test_collapsed_generator(ring) -> None:
    x = ring.info.modes[3].repeat(2500, 1) + 0.001 * torch.randn(2500, 2)
    got = evaluate(mode_coverage(ring.info), x)
    assert got["modes"] == 1.0 and got["high_quality"] == 1.0
    assert got["kl_uniform"] == pytest.approx(math.log(8), rel=1e-12)
    assert got["dominant_mode"] == 3.0 and got["dominant_share"] == 1.0


def test_dominant_mode_follows_a_hopping_generator(ring) -> None:
    # the lecture's ring figure in numbers: one mode at a time, a different one at each evaluation
    m = mode_coverage(ring.info, per_mode=True)
    seen = []
    for k in (5, 2, 7):
        x = ring.info.modes[k].repeat(300, 1) + 0.002 * torch.randn(300, 2)
        x[:30] = ring.info.modes[(k + 1) % 8]  # a few samples on the neighbour
        got = evaluate(m, x)
        assert got["modes"] == 2.0 and got["dominant_share"] == pytest.approx(270 / 300)
        assert got[f"share_{k}"] == pytest.approx(0.9) and got[f"share_{(k + 1) % 8}"] == pytest.approx(0.1)
        seen.append(got["dominant_mode"])
    assert seen == [5.0, 2.0, 7.0]


def test_dominant_mode_tie_goes_to_the_lowest_index(ring) -> None:
    x = torch.cat([ring.info.modes[6].repeat(10, 1), ring.info.modes[1].repeat(10, 1), ring.info.modes[4].repeat(3, 1)])
    got = evaluate(mode_coverage(ring.info), x)
    assert got["dominant_mode"] == 1.0 and got["dominant_share"] == pytest.approx(10 / 23)


def test_per_mode_names_sort_and_are_bounded() -> None:
    ds = gaussian_grid(num_samples=10)  # 25 modes: share_00 … share_24
    got = evaluate(mode_coverage(ds.info, per_mode=True), ds.info.modes.clone())
    names = [k for k in got if k.startswith("share_")]
    assert names == sorted(names) and names[0] == "share_00" and names[-1] == "share_24"
    assert all(got[k] == pytest.approx(1 / 25) for k in names) and got["dominant_mode"] == 0.0
    info = DataInfo(sample_shape=(2,), modes=torch.randn(65, 2), mode_std=0.01, name="many")
    with pytest.raises(ValueError, match="65 modes .*at most 64.*per_mode: false"):
        mode_coverage(info, per_mode=True)


def test_nothing_high_quality_and_nothing_seen(ring) -> None:
    m = mode_coverage(ring.info)
    m.update(torch.zeros(10, 2))  # the centre of the ring: 1 away from every mode
    m.update(torch.full((2, 2), float("nan")))  # counted, never high-quality
    got = m.compute()
    assert got["modes"] == 0.0 and got["high_quality"] == 0.0 and math.isnan(got["kl_uniform"])
    assert math.isnan(got["dominant_mode"]) and math.isnan(got["dominant_share"])
    assert int(m.total) == 12
    m.reset()
    m.update(torch.zeros(0, 2))  # an empty batch is fine
    with pytest.warns(UserWarning):  # torchmetrics: compute before any sample
        empty = ModeCoverage(ring.info.modes, 0.01).compute()
    assert empty["modes"] == 0.0 and math.isnan(empty["high_quality"])


def test_threshold_is_inclusive_and_configurable(ring) -> None:
    # exactly 2σ and 4σ from mode 0 along the x axis
    x = torch.tensor([[1.02, 0.0], [1.04, 0.0]])
    assert evaluate(mode_coverage(ring.info), x)["high_quality"] == 0.5
    assert evaluate(mode_coverage(ring.info, threshold_std=5.0), x)["high_quality"] == 1.0


def test_split_over_ranks_equals_one_process(ring) -> None:
    x = sample_mixture(ring.info.modes[:5], 0.02, 2000, seed=7)  # 5 of 8 modes, partly off-mode
    whole = evaluate(mode_coverage(ring.info), x)
    a, b = mode_coverage(ring.info), mode_coverage(ring.info)
    a.update(x[:1200])
    b.update(x[1200:])
    # a single shard is not the answer (computed on a copy: torchmetrics caches compute()'s
    # result and merge_state does not clear that cache)
    assert copy.deepcopy(a).compute() != whole
    a.merge_state(b)  # what the sum all-reduce does under DDP
    assert a.compute() == whole
    # the same through the raw states, as torch.distributed would sum them
    c, d = mode_coverage(ring.info), mode_coverage(ring.info)
    c.update(x[:700])
    d.update(x[700:])
    c.merge_state({"hq_counts": d.hq_counts, "total": d.total})
    assert c.compute() == whole


def test_images_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    # modes with a multi-dimensional sample shape; tiny blocks exercise the chunked distance loop
    g = torch.Generator().manual_seed(0)
    modes = torch.randn(4, 1, 3, 3, generator=g) * 5
    info = DataInfo(sample_shape=(1, 3, 3), kind="image", modes=modes, mode_std=0.1, name="toy")
    x = modes[torch.randint(4, (301,), generator=g)] + 0.2 * torch.randn(301, 1, 3, 3, generator=g)
    want = reference(x.reshape(301, -1).double().numpy(), modes.reshape(4, -1).double().numpy(), 0.1)
    monkeypatch.setattr(mc, "CHUNK_ELEMENTS", 4 * 9 * 7)  # 7 rows per block
    got = evaluate(mode_coverage(info, threshold_std=3.0), x, batch=301)
    assert got["modes"] == want["modes"] and got["high_quality"] == pytest.approx(want["high_quality"])
    with pytest.raises(ValueError, match="generated samples have 2 values each .* modes have 9"):
        mode_coverage(info).update(torch.zeros(3, 2))


def test_needs_known_modes(registry) -> None:
    info = DataInfo(sample_shape=(2,), name="tensor-file")
    with pytest.raises(ValueError, match="needs a dataset with known true modes .*'tensor-file' has none"):
        mode_coverage(info)
    with pytest.raises(ConfigError, match=r"metrics.0 \(metric 'mode-coverage'.*known true modes"):
        registry.build("metric", {"name": "mode-coverage"}, path="metrics.0", info=info)


def test_discovered_through_entry_point(registry, ring) -> None:
    comp = registry.get("metric", "mode-coverage")
    assert comp.plugin == "mode-coverage"
    assert {p.name: p.default for p in comp.parameters()} == {"num_samples": 2500, "threshold_std": 3.0,
                                                                   "per_mode": False}
    m = registry.build("metric", {"name": "mode-coverage", "num_samples": 1000}, info=ring.info)
    assert isinstance(m, ModeCoverage) and m.num_samples == 1000



def _rank_main(rank: int, world: int, port: int, x: torch.Tensor, modes: torch.Tensor, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        info = DataInfo(sample_shape=(2,), modes=modes, mode_std=0.01, name="gaussian-ring")
        m = mode_coverage(info)
        m.update(x[rank::world])  # each rank sees its own shard of the generated samples
        result = m.compute()  # collective: the states are summed over both ranks
    finally:
        dist.destroy_process_group()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_two_processes_reduce_to_the_single_process_value(ring, tmp_path) -> None:
    import json
    import socket

    import torch.multiprocessing as tmp

    x = sample_mixture(ring.info.modes[:6], 0.02, 1000, seed=9)
    whole = evaluate(mode_coverage(ring.info), x)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawn, not fork: a forked child can deadlock in the OpenMP pool the parent already used
    tmp.spawn(_rank_main, args=(2, port, x, ring.info.modes, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1] == whole
