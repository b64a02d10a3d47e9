"""class-coverage (modes, KL to uniform, class accuracy) and nearest-neighbours (memorization)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ganforge.contract.components import DataInfo
from ganforge_plugins.metrics.classifier import ClassCoverage, NearestNeighbours, kl_to_uniform


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


class PixelDigit(nn.Module):
    """Test classifier: the digit is written in the top-left pixel, (x + 1) / 2 · 9 (channels averaged)."""

    name = "pixel-digit"
    weights_sha256 = ""
    feature_dim = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)[:, :1, 0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        digit = ((x.mean(1)[:, 0, 0] + 1) / 2 * 9).round().long().clamp(0, 9)
        return nn.functional.one_hot(digit, 10).double() * 10


def encode(digits: torch.Tensor, size: int = 4) -> torch.Tensor:
    """(N, C) digits → (N, C, size, size) images whose pixels encode them."""
    v = digits.double() / 9 * 2 - 1
    return v[:, :, None, None].expand(-1, -1, size, size).clone()


STACKED = DataInfo(sample_shape=(3, 4, 4), kind="image", num_classes=1000, name="stacked")
PLAIN = DataInfo(sample_shape=(1, 4, 4), kind="image", num_classes=10, name="digits")


def test_kl_to_uniform_direction_and_limits():
    assert kl_to_uniform(torch.ones(1000)) == pytest.approx(0.0, abs=1e-12)
    one = torch.zeros(1000)
    one[7] = 5
    assert kl_to_uniform(one) == pytest.approx(math.log(1000))
    c = torch.tensor([3.0, 1.0, 0.0, 0.0])
    p = np.array([0.75, 0.25])
    assert kl_to_uniform(c) == pytest.approx(float((p * np.log(p / 0.25)).sum()))  # KL(p_gen ‖ u)


def test_stacked_modes_kl_and_class_accuracy():
    g = torch.Generator().manual_seed(0)
    triples = torch.randint(0, 10, (40, 3), generator=g)  # ≤ 40 distinct modes
    picks = triples[torch.randint(0, 40, (600,), generator=g)]
    x = encode(picks)
    y = picks[:, 0] * 100 + picks[:, 1] * 10 + picks[:, 2]
    y_wrong = y.clone()
    y_wrong[::4] = (y_wrong[::4] + 1) % 1000  # a quarter mislabelled

    m = ClassCoverage(PixelDigit(), info=STACKED)
    assert m.num_modes == 1000 and m.num_classes == 10
    m.update(x[:300], y_wrong[:300])
    m.update(x[300:], y_wrong[300:])
    out = m.compute()

    counts = np.bincount(y.numpy(), minlength=1000)
    p = counts / counts.sum()
    nz = p > 0
    assert out["modes"] == float(nz.sum())
    assert out["kl_uniform"] == pytest.approx(float((p[nz] * np.log(p[nz] * 1000)).sum()), rel=1e-12)
    assert out["class_accuracy"] == pytest.approx(0.75)
    proto = m.protocol()
    assert proto["num_modes"] == 1000 and proto["per_channel"] and proto["num_samples"] == 26_000
    assert "KL(p_gen || uniform)" in proto["kl"]


def test_unconditional_has_no_class_accuracy_and_plain_digits_have_10_modes():
    digits = torch.arange(10).repeat(5)[:, None]
    m = ClassCoverage(PixelDigit(), info=PLAIN)
    m.update(encode(digits))
    out = m.compute()
    assert m.num_modes == 10 and out == {"modes": 10.0, "kl_uniform": pytest.approx(0.0, abs=1e-12),
                                         "uncertain": 0.0}  # one channel: no split of the KL

    m2 = ClassCoverage(PixelDigit(), info=STACKED, per_channel=False)  # whole image: channel mean
    assert m2.num_modes == 10
    m2.update(encode(torch.full((8, 3), 4)))
    assert m2.compute()["modes"] == 1.0


class SoftDigit(PixelDigit):
    """PixelDigit with a known top probability: the logit margin / 10 is written in the top-right pixel."""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        digit = ((x.mean(1)[:, 0, 0] + 1) / 2 * 9).round().long().clamp(0, 9)
        margin = x.mean(1)[:, 0, -1].double() * 10
        return nn.functional.one_hot(digit, 10).double() * margin[:, None]


def test_kl_splits_into_channel_shares_and_dependence_and_uncertain_counts_unsure_images():
    g = torch.Generator().manual_seed(3)
    # Channel 0 uneven (digit 3 three times as likely), channel 2 a copy of channel 1 (dependent).
    d0 = torch.multinomial(torch.tensor([1.0] * 3 + [3.0] + [1.0] * 6), 4000, replacement=True, generator=g)
    d1 = torch.randint(0, 10, (4000,), generator=g)
    d = torch.stack([d0, d1, d1], 1)
    x = encode(d)
    # Top-right pixel: logit margin 1 (top softmax prob e/(e+9) = 0.23: unsure) for every 5th image, else 10.
    margin = torch.full((4000,), 10.0, dtype=torch.float64)
    margin[::5] = 1.0
    x[:, :, 0, -1] = margin[:, None] / 10
    m = ClassCoverage(SoftDigit(), info=STACKED)
    m.update(x[:1500])
    m.update(x[1500:])
    out = m.compute()

    def kl(counts):
        p = counts / counts.sum()
        nz = p > 0
        return float((p[nz] * np.log(p[nz] * len(p))).sum())

    dn = d.numpy()
    joint = np.bincount(dn[:, 0] * 100 + dn[:, 1] * 10 + dn[:, 2], minlength=1000).astype(float)
    marg = [np.bincount(dn[:, c], minlength=10).astype(float) for c in range(3)]
    prod = np.einsum("i,j,k->ijk", *[h / h.sum() for h in marg]).reshape(-1)
    pj = joint / joint.sum()
    nz = pj > 0
    assert out["kl_uniform"] == pytest.approx(kl(joint), rel=1e-12)
    assert out["kl_channels"] == pytest.approx(sum(kl(h) for h in marg), rel=1e-12)
    assert out["kl_dependence"] == pytest.approx(float((pj[nz] * np.log(pj[nz] / prod[nz])).sum()), rel=1e-9)
    assert out["kl_dependence"] > 2.0  # channel 2 copies channel 1: I = log 10 nats, near enough
    assert out["uncertain"] == pytest.approx(0.2)  # every channel of every 5th image
    assert m.protocol()["uncertain"].startswith("top softmax probability < 0.9")
    # The threshold is a parameter: at 0.2 the margin-1 images (0.23) are sure enough.
    m2 = ClassCoverage(SoftDigit(), info=STACKED, confidence=0.2)
    m2.update(x)
    assert m2.compute()["uncertain"] == 0.0


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9", None])
def test_class_coverage_confidence_must_be_a_probability(bad):
    with pytest.raises(ValueError, match=r"confidence=.* must be a number in \(0\.0, 1\.0\)"):
        ClassCoverage(PixelDigit(), info=STACKED, confidence=bad)


def test_class_coverage_merged_halves_equal_one():
    g = torch.Generator().manual_seed(1)
    d = torch.randint(0, 10, (200, 3), generator=g)
    y = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    whole, a, b = (ClassCoverage(PixelDigit(), info=STACKED) for _ in range(3))
    whole.update(encode(d), y)
    a.update(encode(d[:90]), y[:90])
    b.update(encode(d[90:]), y[90:])
    a.merge_state(b)
    assert a.compute() == whole.compute()


def test_class_coverage_needs_classify():
    class Features(nn.Module):
        name, feature_dim, weights_sha256 = "just-features", 3, ""

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="'just-features' has no classify"):
        ClassCoverage(Features(), info=STACKED)


# -- nearest neighbours ---------------------------------------------------------------------------------


class Flat(nn.Module):
    name = "flat"
    weights_sha256 = ""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.reshape(x.shape[0], -1).double()


def real_images(n: int = 60, seed: int = 2) -> torch.Tensor:
    return torch.rand((n, 1, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def batches_of(x, bs=16):
    return lambda: ((x[i : i + bs], None) for i in range(0, x.shape[0], bs))


def test_nearest_neighbours_finds_copies_and_draws_grid():
    real = real_images()
    ex = Flat(16)
    m = NearestNeighbours(ex, info=PLAIN, k=3, num_samples=5)
    m.prepare_real(batches_of(real), {"dataset": "nn-test"})
    assert m.real_count == 60 and m.cache_hit is False
    copies = real[[3, 7, 11]] + 1e-4
    fresh = real_images(2, seed=99)
    m.update(torch.cat([copies, fresh]))
    m.update(real[:4])  # beyond num_samples: ignored
    out = m.compute()

    dist, idx = m.distances(), m.indices()
    assert dist.shape == (5, 3) and idx.shape == (5, 3)
    assert idx[:3, 0].tolist() == [3, 7, 11]
    assert np.all(np.diff(dist, axis=1) >= 0)
    gen = torch.cat([copies, fresh]).reshape(5, -1).numpy()
    brute = np.sqrt(((gen[:, None] - real.reshape(60, -1).numpy()[None]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, np.sort(brute, 1)[:, :3], rtol=1e-12)
    rr = np.sqrt(((real.reshape(60, -1).numpy()[:, None] - real.reshape(60, -1).numpy()[None]) ** 2).sum(-1))
    np.fill_diagonal(rr, np.inf)
    assert out["real_nn_dist_mean"] == pytest.approx(rr.min(1).mean(), rel=1e-9)
    assert out["nn_dist_mean"] == pytest.approx(np.sort(brute, 1)[:, 0].mean(), rel=1e-12)
    assert out["nn_dist_min"] == pytest.approx(4e-4, rel=1e-6)  # 16 pixels × 1e-4
    assert out["nn_ratio"] == pytest.approx(out["nn_dist_mean"] / out["real_nn_dist_mean"])

    fig = m.figure()
    assert fig.dtype == np.uint8 and fig.shape == (2 + 5 * 6, 2 + 4 * 6 + 4, 1)
    # row 0: the generated copy, then real[3] as its nearest neighbour
    real_u8 = ((real[3, 0] + 1) / 2 * 255).round().numpy()
    np.testing.assert_array_equal(fig[2:6, 2 + 6 + 4 : 2 + 6 + 4 + 4, 0], real_u8)

    # a second run reads real images, features and real-real distances from the cache
    ex2 = Flat(16)
    m2 = NearestNeighbours(ex2, info=PLAIN, k=3, num_samples=5)
    m2.prepare_real(batches_of(real), {"dataset": "nn-test"})
    assert ex2.calls == 0 and m2.cache_hit is True
    assert torch.equal(m2.real_images, m.real_images)


def test_nearest_neighbours_ratio_separates_copying_from_new_samples():
    real = real_images(200, seed=3)
    m = NearestNeighbours(Flat(16), info=PLAIN, k=5, num_samples=16)
    m.prepare_real(batches_of(real, 64), {"dataset": "nn-ratio"})
    m.update(real[:16] + 1e-3)
    copying = m.compute()["nn_ratio"]
    m.reset()
    with pytest.raises(RuntimeError, match="compute"):
        m.figure()
    m.update(real_images(16, seed=4))
    fresh = m.compute()["nn_ratio"]
    assert copying < 0.05 and fresh > 0.5, (copying, fresh)


def test_nearest_neighbours_num_real_keeps_at_most_num_real():
    real = real_images(100, seed=5)
    m = NearestNeighbours(Flat(16), info=PLAIN, num_real=40)
    m.prepare_real(batches_of(real, 16), {"dataset": "nn-cap"})
    assert m.real_images.shape == (40, 1, 4, 4) and m.real_features.shape == (40, 16)


# -- registry and real data ------------------------------------------------------------------------------


def test_registered():
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    assert {"class-coverage", "nearest-neighbours"} <= set(reg.names("metric"))
    params = {p.name: p.default for p in reg.get("metric", "class-coverage").parameters()}
    assert params["classifier"] == "digits-cnn" and params["num_samples"] == 26_000 and params["per_channel"] is True
    params = {p.name: p.default for p in reg.get("metric", "nearest-neighbours").parameters()}
    assert params["feature_extractor"] == "digits-cnn" and params["k"] == 5 and params["num_samples"] == 16


def _build_or_skip(reg, kind, spec, **inj):
    names = reg.names(kind)
    if spec["name"] not in names:
        pytest.skip(f"{kind} '{spec['name']}' is not registered")
    try:
        return reg.build(kind, spec, **inj)
    except Exception as exc:  # e.g. the digits-cnn weights are not shipped yet
        pytest.skip(f"cannot build {kind} '{spec['name']}': {exc}")


def test_real_stacked_digits_cover_most_modes():
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    ds = _build_or_skip(reg, "dataset", {"name": "stacked-digits", "num_samples": 3000, "labels": True}, seed=0)
    if "digits-cnn" not in reg.names("feature_extractor"):
        pytest.skip("digits-cnn not registered")
    m = _build_or_skip(reg, "metric", {"name": "class-coverage", "num_samples": 3000}, info=ds.info)
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it[0] for it in items])
    y = torch.stack([torch.as_tensor(it[1]) for it in items]).long()
    m.update(x, y)
    out = m.compute()
    # 3000 uniform draws over 1000 modes cover about 1000·(1 − e⁻³) ≈ 950
    assert out["modes"] > 850 and out["kl_uniform"] < 0.6 and out["class_accuracy"] > 0.8, out


def test_real_digits_nearest_neighbours_detects_training_copies():
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    ds = _build_or_skip(reg, "dataset", {"name": "digits"}, seed=0)
    m = _build_or_skip(reg, "metric", {"name": "nearest-neighbours", "num_real": 500}, info=ds.info)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    m.prepare_real(batches_of(x[:500], 128), {"dataset": "digits-first-500"})
    m.update(x[:16])
    out = m.compute()
    assert out["nn_dist_min"] < 1e-6 and out["nn_ratio"] < 0.05
    assert m.figure().shape[-1] == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(6)
    d = torch.randint(0, 10, (300, 3), generator=g)
    y = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    real = real_images(120, seed=7)
    gen = real_images(16, seed=8)
    out = {}
    for dev in ("cpu", "cuda"):
        cc = ClassCoverage(PixelDigit(), info=STACKED).to(dev)
        cc.update(encode(d).to(dev), y.to(dev))
        nn_metric = NearestNeighbours(Flat(16), info=PLAIN, k=3).to(dev)
        nn_metric.prepare_real(batches_of(real), {"dataset": f"cuda-{dev}"})
        nn_metric.update(gen.to(dev))
        out[dev] = (cc.compute(), nn_metric.compute(), nn_metric.figure(), nn_metric.indices())
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-12)
    assert out["cuda"][1] == pytest.approx(out["cpu"][1], rel=1e-9)
    np.testing.assert_array_equal(out["cuda"][2], out["cpu"][2])
    np.testing.assert_array_equal(out["cuda"][3], out["cpu"][3])
