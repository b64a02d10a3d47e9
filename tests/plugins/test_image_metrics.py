"""FID, KID, IS and PRDC against straightforward NumPy/SciPy references on fixed feature arrays,
plus state merging (the distributed reduction), a real two-process gloo run, the real-statistics
cache, error paths, and a sanity check on the digits."""

from __future__ import annotations

import math
import os
import socket
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ganforge.contract.components import DataInfo
from ganforge.io import cache_dir
from ganforge_plugins.metrics.features import canonical_order
from ganforge_plugins.metrics.frechet import FID, KID, frechet_distance, kid_subset_indices
from ganforge_plugins.metrics.inception_score import InceptionScore, inception_score_from_logits
from ganforge_plugins.metrics.prdc import PRDC

RTOL = 1e-6


class Feats(nn.Module):
    """Test extractor: the samples are the features (float64 kept), logits for IS are the samples
    too; counts calls so cache tests can see whether extraction ran."""

    name = "test-identity"
    weights_sha256 = ""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim
        self.calls = 0
        self.proj = nn.Linear(1, 1)  # a parameter, to check it stays out of the metric's state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.reshape(x.shape[0], -1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


def batches_of(x: torch.Tensor, bs: int = 64):
    return lambda: ((x[i : i + bs], None) for i in range(0, x.shape[0], bs))


def feed(metric, x: torch.Tensor, bs: int = 50) -> None:
    for i in range(0, x.shape[0], bs):
        metric.update(x[i : i + bs])


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def two_sets(n: int = 500, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.5 + rng.normal(size=d)
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.4 + rng.normal(size=d) * 0.5
    return a, b


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = fake.mean(0), real.mean(0)
    s1, s2 = np.cov(fake, rowvar=False, ddof=1), np.cov(real, rowvar=False, ddof=1)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_metric(real: np.ndarray, fake: np.ndarray, **kw) -> tuple[FID, float]:
    d = real.shape[1]
    m = FID(Feats(d), **kw)
    m.prepare_real(batches_of(torch.from_numpy(real)), {"test": "fid", "n": len(real), "d": d})
    feed(m, torch.from_numpy(fake))
    return m, m.compute()["fid"]


# -- FID ---------------------------------------------------------------------------------------------


def test_fid_matches_scipy_and_torchmetrics():
    from torchmetrics.image.fid import _compute_fid  # importable without torch-fidelity in 1.9

    real, fake = two_sets()
    m, value = fid_metric(real, fake)
    ref = scipy_fid(real, fake)
    assert value == pytest.approx(ref, rel=RTOL)
    # torchmetrics' own formula (eigvals of Σ1Σ2) on the same moments
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    tm = _compute_fid(
        t(fake.mean(0)), t(np.cov(fake, rowvar=False)), t(real.mean(0)), t(np.cov(real, rowvar=False))
    )
    assert value == pytest.approx(float(tm), rel=RTOL)
    # the metric's moments are the textbook ones
    mu, cov = m.fake_moments()
    np.testing.assert_allclose(mu.numpy(), fake.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(fake, rowvar=False), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.real_sigma.numpy(), np.cov(real, rowvar=False), rtol=1e-10, atol=1e-12)


def test_fid_near_singular_covariance_matches_scipy():
    rng = np.random.default_rng(1)
    n, d = 500, 16
    base = rng.normal(size=(n, 10))
    mix = rng.normal(size=(10, d))
    real = base @ mix + 1e-7 * rng.normal(size=(n, d))  # rank 10 up to 1e-7 noise
    fake = (rng.normal(size=(n, 10)) * 1.1 + 0.2) @ mix + 1e-7 * rng.normal(size=(n, d))
    _, value = fid_metric(real, fake)
    assert math.isfinite(value)
    assert value == pytest.approx(scipy_fid(real, fake), rel=RTOL)


def test_frechet_distance_symmetric_and_zero_on_identical():
    real, fake = two_sets(seed=3)
    mu1, s1 = torch.from_numpy(real.mean(0)), torch.from_numpy(np.cov(real, rowvar=False))
    mu2, s2 = torch.from_numpy(fake.mean(0)), torch.from_numpy(np.cov(fake, rowvar=False))
    assert float(frechet_distance(mu1, s1, mu2, s2)) == pytest.approx(float(frechet_distance(mu2, s2, mu1, s1)), rel=1e-9)
    assert abs(float(frechet_distance(mu1, s1, mu1, s1))) < 1e-9 * float(s1.trace())


def test_fid_fewer_samples_than_dims_warns_but_computes():
    real, fake = two_sets(n=12, d=16, seed=4)
    with pytest.warns(UserWarning, match="singular"):
        _, value = fid_metric(real, fake)
    assert math.isfinite(value) and value > 0


def test_fid_needs_two_samples_and_real_stats():
    m = FID(Feats(4))
    m.update(torch.zeros(3, 4))
    with pytest.raises(RuntimeError, match="prepare_real"):
        m.compute()
    m.prepare_real(batches_of(torch.randn(20, 4, dtype=torch.float64)), {"t": 1})
    m.update(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least 2"):
        m.compute()


def test_non_finite_inputs_and_features_are_clear_errors():
    m = FID(Feats(4))
    x = torch.zeros(5, 4)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 5 generated samples contain NaN"):
        m.update(x)

    class Broken(Feats):
        def forward(self, x):
            return torch.full((x.shape[0], 4), float("inf"))

    m = FID(Broken(4))
    with pytest.raises(ValueError, match="test-identity.*non-finite"):
        m.update(torch.zeros(3, 4))


def test_extractor_weights_not_in_state_dict_and_protocol():
    m = FID(Feats(16), num_samples=123, num_real=456)
    assert not any("proj" in k for k in m.state_dict())
    p = m.protocol()
    for key in ("feature_extractor", "weights_sha256", "feature_dim", "num_samples", "num_real", "preprocessing", "dtype"):
        assert key in p
    assert p["dtype"] == "float64" and p["num_samples"] == 123 and p["num_real"] == 456


# -- state merging: what torchmetrics' distributed sync does ------------------------------------------


@pytest.mark.parametrize("cls,kw", [(FID, {}), (KID, {"subsets": 5, "subset_size": 50}), (PRDC, {}), (InceptionScore, {"splits": 4})])
def test_merged_halves_equal_one_metric(cls, kw):
    real, fake = two_sets(n=200, d=8, seed=5)
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)

    def make():
        m = cls(Feats(8), **kw)
        if m.needs_real:
            m.prepare_real(batches_of(real_t), {"test": "merge"})
        return m

    whole, a, b = make(), make(), make()
    feed(whole, fake_t)
    feed(a, fake_t[:100])
    feed(b, fake_t[100:])
    a.merge_state(b)
    assert a.compute() == pytest.approx(whole.compute(), rel=1e-9)


# -- KID, IS, PRDC against NumPy ----------------------------------------------------------------------


def np_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def test_kid_matches_numpy_with_same_subsets():
    from torchmetrics.image.kid import poly_mmd

    real, fake = two_sets(n=300, d=16, seed=6)
    m = KID(Feats(16), subsets=7, subset_size=100, seed=11)
    m.prepare_real(batches_of(torch.from_numpy(real)), {"test": "kid"})
    feed(m, torch.from_numpy(fake))
    out = m.compute()
    # subsets are drawn from the canonical (rank-independent) order of each set
    real = real[canonical_order(torch.from_numpy(real)).numpy()]
    fake = fake[canonical_order(torch.from_numpy(fake)).numpy()]
    vals = []
    for ir, jf in kid_subset_indices(300, 300, 7, 100, 11):
        x, y = real[ir.numpy()], fake[jf.numpy()]
        vals.append(np_mmd2_unbiased(x, y))
        # torchmetrics' estimator agrees for equal subset sizes
        assert float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(vals[-1], rel=1e-9)
    assert out["kid_mean"] == pytest.approx(np.mean(vals), rel=1e-9)
    assert out["kid_std"] == pytest.approx(np.std(vals), rel=1e-9)
    assert m.protocol()["subset_size"] == 100


def test_kid_subset_size_capped_by_sample_counts():
    real, fake = two_sets(n=60, d=4, seed=7)
    m = KID(Feats(4), subsets=3, subset_size=1000)
    m.prepare_real(batches_of(torch.from_numpy(real)), {"test": "kid-cap"})
    feed(m, torch.from_numpy(fake[:40]))
    with pytest.warns(UserWarning, match="capped to 40"):
        out = m.compute()
    assert math.isfinite(out["kid_mean"])


def np_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    scores = []
    n = len(p)
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), 1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_numpy():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(230, 10)) * 3
    # the formula on consecutive splits
    ref = np_inception_score(logits, 10)
    assert inception_score_from_logits(torch.from_numpy(logits), 10) == pytest.approx(ref, rel=1e-9)
    # the metric cuts its splits from a fixed permutation of a canonical order: independent of
    # the order samples arrive in (rank layout)
    m = InceptionScore(Feats(10), splits=10)
    feed(m, torch.from_numpy(logits))
    out = m.compute()
    order = m.split_order(torch.from_numpy(logits)).numpy()
    ref = np_inception_score(logits[order], 10)
    assert out["is_mean"] == pytest.approx(ref[0], rel=1e-9)
    assert out["is_std"] == pytest.approx(ref[1], rel=1e-9)
    m_rev = InceptionScore(Feats(10), splits=10)
    feed(m_rev, torch.from_numpy(logits[::-1].copy()))
    assert m_rev.compute() == pytest.approx(out, rel=1e-12)
    # confident and balanced classes give IS = number of classes
    one_hot = torch.eye(10, dtype=torch.float64).repeat(20, 1) * 100
    m2 = InceptionScore(Feats(10), splits=1)
    m2.update(one_hot)
    assert m2.compute()["is_mean"] == pytest.approx(10.0, rel=1e-9)


def test_inception_score_needs_classify():
    class NoClassify(nn.Module):
        name, feature_dim, weights_sha256 = "plain-features", 4, ""

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="'plain-features' has no classify"):
        InceptionScore(NoClassify())


def np_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rr, ff, rf = dist(real, real), dist(fake, fake), dist(real, fake)
    r_real = np.sort(rr, axis=1)[:, k]  # index 0 is the point itself
    r_fake = np.sort(ff, axis=1)[:, k]
    inside = rf < r_real[:, None]  # (N, M): fake j in the ball of real i
    return {
        "precision": float(inside.any(0).mean()),
        "recall": float((rf < r_fake[None, :]).any(1).mean()),
        "density": float(inside.sum() / (k * fake.shape[0])),
        "coverage": float((rf.min(1) < r_real).mean()),
    }


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_numpy(k):
    real, fake = two_sets(n=250, d=6, seed=9)
    fake = fake[:180]
    m = PRDC(Feats(6), nearest_k=k)
    m.prepare_real(batches_of(torch.from_numpy(real)), {"test": "prdc"})
    feed(m, torch.from_numpy(fake))
    out = m.compute()
    ref = np_prdc(real, fake, k)
    assert out == pytest.approx(ref, abs=1e-12)
    assert 0 < out["precision"] < 1 and 0 < out["coverage"] < 1
    p = m.protocol()
    assert p["nearest_k"] == k and p["real_count"] == 250 and p["fake_count"] == 180


def test_prdc_same_distribution_is_high():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    m = PRDC(Feats(5))
    m.prepare_real(batches_of(torch.from_numpy(real)), {"test": "prdc-same"})
    m.update(torch.from_numpy(fake))
    out = m.compute()
    assert out["precision"] > 0.6 and out["recall"] > 0.6 and out["coverage"] > 0.8
    assert 0.7 < out["density"] < 1.3  # density's expectation is 1 for identical distributions


# -- real-statistics cache ----------------------------------------------------------------------------


def test_real_stats_cached_and_corrupt_entry_recomputed():
    real = torch.from_numpy(two_sets(n=100, d=8, seed=12)[0])
    proto = {"dataset": "test", "n": 100}
    ex1 = Feats(8)
    m1 = FID(ex1)
    m1.prepare_real(batches_of(real, 25), proto)
    assert ex1.calls == 4 and m1.cache_hit is False
    files = list((cache_dir() / "stats").glob("*.pt"))
    assert len(files) == 1

    ex2 = Feats(8)
    m2 = FID(ex2)
    m2.prepare_real(batches_of(real, 25), proto)
    assert ex2.calls == 0 and m2.cache_hit is True
    assert torch.equal(m2.real_sigma, m1.real_sigma) and m2.real_count == 100

    # another protocol (num_real) is another entry
    ex3 = Feats(8)
    FID(ex3, num_real=50).prepare_real(batches_of(real, 25), proto)
    assert ex3.calls == 2

    files[0].write_bytes(b"not a torch file")
    ex4 = Feats(8)
    m4 = FID(ex4)
    m4.prepare_real(batches_of(real, 25), proto)
    assert ex4.calls == 4 and m4.cache_hit is False
    assert torch.allclose(m4.real_sigma, m1.real_sigma)
    ex5 = Feats(8)
    FID(ex5).prepare_real(batches_of(real, 25), proto)
    assert ex5.calls == 0  # the rewritten entry is valid


def test_kid_and_prdc_share_real_features_and_num_real_caps():
    real = torch.from_numpy(two_sets(n=100, d=8, seed=13)[0])
    ex = Feats(8)
    k = KID(ex, num_real=60)
    k.prepare_real(batches_of(real, 25), {"dataset": "share"})
    assert k.real_count == 60 and ex.calls == 3  # stops reading once num_real is reached
    ex2 = Feats(8)
    p = PRDC(ex2, num_real=60)
    p.prepare_real(batches_of(real, 25), {"dataset": "share"})
    assert ex2.calls == 0 and torch.equal(p.real_features, k.real_features)


# -- registry -------------------------------------------------------------------------------------------


def test_registered_and_built_through_registry():
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    for name in ("fid", "kid", "inception-score", "prdc"):
        assert name in reg.names("metric"), name
    params = {p.name for p in reg.get("metric", "kid").parameters()}
    assert {"feature_extractor", "num_samples", "num_real", "subsets", "subset_size", "subset_seed"} <= params
    if "identity" not in reg.names("feature_extractor"):
        pytest.skip("the 'identity' feature extractor is not registered")
    info = DataInfo(sample_shape=(6,), name="points")
    m = reg.build("metric", {"name": "fid", "feature_extractor": "identity", "num_samples": 200}, info=info)
    x = torch.from_numpy(two_sets(n=200, d=6, seed=14)[0])
    m.prepare_real(batches_of(x), {"dataset": "points"})
    m.update(x)
    assert abs(m.compute()["fid"]) < 1e-6  # same samples on both sides
    assert m.protocol()["feature_extractor"] == "identity"


# -- two real processes (gloo) ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world: int, port: int, cache: str, out_dir: str) -> None:
    os.environ["GANFORGE_CACHE"] = cache
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        real, fake = two_sets(n=201, d=8, seed=15)  # odd count: uneven shards
        real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
        shard, fshard = real_t[rank::world], fake_t[rank::world]
        results = {}
        for cls in (FID, KID, PRDC):
            kw = {"subsets": 4, "subset_size": 60} if cls is KID else {}
            ex = Feats(8)
            m = cls(ex, **kw)
            m.prepare_real(batches_of(shard, 32), {"dataset": "gloo"})
            feed(m, fshard, 40)
            results[cls.__name__] = (m.compute(), m.real_count, m.cache_hit, ex.calls)
        # a second pass hits the cache on every rank and extracts nothing
        ex = Feats(8)
        m = FID(ex)
        m.prepare_real(batches_of(shard, 32), {"dataset": "gloo"})
        results["again"] = (m.cache_hit, ex.calls)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_two_process_gloo_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    cache = str(tmp_path / "cache")
    mp.start_processes(_gloo_worker, args=(2, _free_port(), cache, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    real, fake = two_sets(n=201, d=8, seed=15)
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    assert r0["FID"][0]["fid"] == pytest.approx(scipy_fid(real, fake), rel=RTOL)
    # one process on the same samples (KID draws its subsets from a rank-independent order)
    for cls, kw in ((KID, {"subsets": 4, "subset_size": 60}), (PRDC, {})):
        m = cls(Feats(8), **kw)
        m.set_real_features(real_t)
        m.update(fake_t)
        assert r0[cls.__name__][0] == pytest.approx(m.compute(), rel=1e-9)
    for name in ("FID", "KID", "PRDC"):
        assert r0[name][0] == r1[name][0]  # identical on both ranks
        assert r0[name][1] == r1[name][1] == 201
    assert r0["FID"][2] is False and r0["KID"][2] is False and r0["PRDC"][2] is True  # PRDC reuses KID's features
    assert r0["again"] == (True, 0) and r1["again"] == (True, 0)


# -- sanity on real images --------------------------------------------------------------------------------


def _digits_or_skip():
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    if "digits" not in reg.names("dataset"):
        pytest.skip("the 'digits' dataset is not registered (image_data plugin missing)")
    ds = reg.build("dataset", {"name": "digits"}, seed=0)
    x = torch.stack([ds[i][0] if isinstance(ds[i], (tuple, list)) else ds[i] for i in range(len(ds))])
    return reg, ds.info, x


@pytest.mark.parametrize("extractor", ["identity", "digits-cnn"])
def test_digits_halves_much_closer_than_noise(extractor):
    reg, info, x = _digits_or_skip()
    if extractor not in reg.names("feature_extractor"):
        pytest.skip(f"feature extractor '{extractor}' is not registered")
    try:
        m_half = reg.build("metric", {"name": "fid", "feature_extractor": extractor}, info=info)
        m_noise = reg.build("metric", {"name": "fid", "feature_extractor": extractor}, info=info)
    except Exception as exc:  # e.g. digits-cnn weights not shipped yet
        pytest.skip(f"cannot build '{extractor}': {exc}")
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    a, b = x[perm[: len(perm) // 2]], x[perm[len(perm) // 2 :]]
    noise = torch.rand(b.shape, generator=g) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 900 samples < 2048 is fine for a sanity check
        for m in (m_half, m_noise):
            m.prepare_real(batches_of(a, 128), {"dataset": "digits-half-a"})
        m_half.update(b)
        m_noise.update(noise)
        fid_half, fid_noise = m_half.compute()["fid"], m_noise.compute()["fid"]
    assert fid_half * 10 < fid_noise, (fid_half, fid_noise)


def test_digits_inception_score_with_digits_cnn():
    reg, info, x = _digits_or_skip()
    try:
        m = reg.build("metric", {"name": "inception-score", "feature_extractor": "digits-cnn"}, info=info)
    except Exception as exc:
        pytest.skip(f"cannot build 'digits-cnn': {exc}")
    m.update(x)
    real_is = m.compute()["is_mean"]
    m.reset()
    m.update(torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    noise_is = m.compute()["is_mean"]
    assert real_is > 7 and real_is > 2 * noise_is, (real_is, noise_is)


# -- CUDA: states, extractor and inputs on the GPU give the CPU numbers ---------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cls,kw", [(FID, {}), (KID, {"subsets": 5, "subset_size": 100}), (PRDC, {}), (InceptionScore, {"splits": 4})])
def test_cuda_matches_cpu(cls, kw):
    real, fake = two_sets(n=300, d=8, seed=16)
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    out = {}
    for dev in ("cpu", "cuda"):
        m = cls(Feats(8), **kw).to(dev)
        if m.needs_real:
            m.prepare_real(batches_of(real_t), {"test": f"cuda-{dev}"})  # real batches arrive on the CPU
        feed(m, fake_t.to(dev))
        out[dev] = m.compute()
    assert out["cuda"] == pytest.approx(out["cpu"], rel=1e-9, abs=1e-12)
