"""Fréchet Inception Distance and Kernel Inception Distance on extractor features.

* **float64 statistics.** Fréchet distances computed in float32 disagree between implementations by
  whole FID points (torcheval #192); every sum, covariance, kernel and distance here is float64.
* **Matrix square root without ``sqrtm``.** ``Tr((Σ1Σ2)^½) = Tr((Σ1^½ Σ2 Σ1^½)^½)`` (similar
  matrices), and the latter is symmetric PSD, so a symmetric eigendecomposition gives real,
  non-negative eigenvalues: none of ``scipy.linalg.sqrtm``'s complex/NaN results on rank-deficient
  covariances (TTUR #4, pytorch-fid #13).
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Callable, Optional

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from ganforge import ComponentRef, DataInfo, hookimpl
from ganforge_plugins.metrics.features import FeatureMetric, FeatureSetMetric, build_extractor, canonical_order

__all__ = ["FID", "KID", "frechet_distance", "kid_subset_indices", "mmd2_unbiased"]

# -- FID --------------------------------------------------------------------------------------------


def _sqrt_psd(s: Tensor) -> Tensor:
    """Symmetric square root of a positive semi-definite matrix (negative rounding noise clamped)."""
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet distance between N(μ1, Σ1) and N(μ2, Σ2) in float64 (Heusel et al. 2017, eq. 6):

    ``‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``, with ``Tr((Σ1Σ2)^½) = Σ √λ(Σ1^½ Σ2 Σ1^½)``
    (similar matrices share eigenvalues; this one is symmetric PSD, so ``eigvalsh`` is exact to
    rounding and never complex). Computed on the CPU for reproducible rounding.
    """
    mu1, mu2 = mu1.detach().double().cpu(), mu2.detach().double().cpu()
    s1, s2 = sigma1.detach().double().cpu(), sigma2.detach().double().cpu()
    diff = mu1 - mu2
    r = _sqrt_psd(s1)
    m = r @ s2 @ r
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    return diff.dot(diff) + s1.trace() + s2.trace() - 2 * tr_covmean


class FID(FeatureMetric):
    """Fréchet Inception Distance (Heusel et al. 2017), float64, unbiased (N−1) covariances.

    Generated-sample state: float64 sums of ``x − c`` and ``(x − c)(x − c)ᵀ`` and the count, all
    ``dist_reduce_fx="sum"``: a constant-size reduction. ``c`` is the real mean (identical on every
    rank after :meth:`set_real`); shifting by it keeps the covariance free of cancellation.
    """

    metric_name = "fid"
    needs_real = True
    real_reduce = {"features": "moments"}  # the engine's float64 mean and unbiased covariance

    def __init__(self, extractor: Any, **kwargs: Any) -> None:
        super().__init__(extractor, **kwargs)
        d = int(self.extractor.feature_dim)
        self.add_state("fake_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.real_mu: Optional[Tensor] = None
        self.real_sigma: Optional[Tensor] = None
        self._shift = torch.zeros(d, dtype=torch.float64)

    def set_real(self, stats: dict[str, Any]) -> None:
        m = stats["features"]
        if m["n"] < 2:
            raise ValueError(f"fid: got {m['n']} real samples; need at least 2")
        self.set_real_moments(m["mean"], m["cov"], m["n"])

    def set_real_moments(self, mu: Tensor, sigma: Tensor, n: int) -> None:
        """Use given real statistics (e.g. published reference moments); resets generated state."""
        self.real_mu, self.real_sigma = mu.double().cpu(), sigma.double().cpu()
        self.real_count = int(n)
        self._warn_low_count(self.real_count, "real")
        self._shift = self.real_mu.clone()
        self.reset()

    def update(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        f = self._extract(x, "generated").double().to(self.fake_sum.device)
        c = f - self._shift.to(f.device)
        self.fake_sum += c.sum(0)
        self.fake_outer += c.T @ c
        self.fake_n += f.shape[0]

    def fake_moments(self) -> tuple[Tensor, Tensor]:
        """Mean and unbiased covariance of the generated features seen so far (this rank's view)."""
        n = float(self.fake_n)
        if n < 2:
            raise ValueError(f"fid: {int(n)} generated samples; need at least 2 for a covariance")
        mc = self.fake_sum.cpu() / n
        cov = (self.fake_outer.cpu() - n * torch.outer(mc, mc)) / (n - 1)
        return self._shift + mc, cov

    def compute(self) -> dict[str, float]:
        if self.real_mu is None or self.real_sigma is None:
            raise RuntimeError("fid: real statistics missing: call prepare_real() before compute()")
        mu, cov = self.fake_moments()
        self._warn_low_count(int(self.fake_n), "generated")
        return {"fid": float(frechet_distance(mu, cov, self.real_mu, self.real_sigma))}

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "covariance": "unbiased (N-1)", "sqrtm": "eigh of sqrt(S1) S2 sqrt(S1)"}


# -- KID --------------------------------------------------------------------------------------------


def kid_subset_indices(
    n_real: int, n_fake: int, subsets: int, subset_size: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """Index pairs of the KID subsets: each a draw without replacement from each set, from a
    seeded CPU generator so every rank (and a reference implementation) gets the same subsets."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(subsets):
        ir = torch.randperm(n_real, generator=g)[:subset_size]
        jf = torch.randperm(n_fake, generator=g)[:subset_size]
        out.append((ir, jf))
    return out


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3) -> Tensor:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with the polynomial kernel ``(xᵀy/d + 1)^degree``
    of Bińkowski et al. (2018, KID); diagonal terms left out of the within-set means."""
    x, y = x.double(), y.double()
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]
    kxx = (x @ x.T / d + 1) ** degree
    kyy = (y @ y.T / d + 1) ** degree
    kxy = (x @ y.T / d + 1) ** degree
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2 * kxy.mean()


class KID(FeatureSetMetric):
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial
    kernel, averaged over ``subsets`` random subsets of ``subset_size`` from each set.

    Reports ``kid_mean`` and ``kid_std`` (population std over subsets, as the reference code and
    torchmetrics). Generated features are a ``"cat"`` state (all-gathered at compute). Subsets are
    drawn from a seeded generator after :func:`canonical_order`, so every rank computes the same
    value and the value does not depend on the number of ranks.
    """

    metric_name = "kid"
    needs_real = True

    def __init__(self, extractor: Any, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(extractor, **kwargs)
        if subsets < 1 or subset_size < 2:
            raise ValueError(f"kid: need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
        self.subsets, self.subset_size, self.seed = int(subsets), int(subset_size), int(seed)

    def effective_subset_size(self, n_fake: int) -> int:
        assert self.real_features is not None
        return min(self.subset_size, self.real_features.shape[0], n_fake)

    def compute(self) -> dict[str, float]:
        if self.real_features is None:
            raise RuntimeError("kid: real features missing: call prepare_real() before compute()")
        fake = dim_zero_cat(self.fake_features).double()
        real = self.real_features.to(fake.device).double()
        fake, real = fake[canonical_order(fake)], real[canonical_order(real)]
        m = self.effective_subset_size(fake.shape[0])
        if m < 2:
            raise ValueError(f"kid: {fake.shape[0]} generated / {real.shape[0]} real samples; need at least 2 each")
        if m < self.subset_size:
            warnings.warn(f"kid: subset_size {self.subset_size} capped to {m} by the sample counts", stacklevel=2)
        vals = torch.stack(
            [
                mmd2_unbiased(real[ir.to(real.device)], fake[jf.to(fake.device)])
                for ir, jf in kid_subset_indices(real.shape[0], fake.shape[0], self.subsets, m, self.seed)
            ]
        )
        return {"kid_mean": float(vals.mean()), "kid_std": float(vals.std(unbiased=False))}

    def protocol(self) -> dict[str, Any]:
        return {
            **super().protocol(),
            "kernel": "(x.y/d + 1)^3",
            "estimator": "unbiased MMD^2",
            "subsets": self.subsets,
            "subset_size": self.subset_size,
            "subset_seed": self.seed,
        }


# -- factories: their typed signatures are the config schemas ----------------------------------------


def fid(
    info: DataInfo,
    feature_extractor: Annotated[str, ComponentRef("feature_extractor")] = "inception-v3",
    num_samples: int = 10_000,
    num_real: Optional[int] = None,
    batch_size: int = 100,
) -> FID:
    """Fréchet Inception Distance (Heusel et al. 2017), float64; papers use 50,000 samples vs the training set."""
    ex = build_extractor(feature_extractor, info, "fid")
    return FID(ex, info=info, num_samples=num_samples, num_real=num_real, batch_size=batch_size)


def kid(
    info: DataInfo,
    feature_extractor: Annotated[str, ComponentRef("feature_extractor")] = "inception-v3",
    num_samples: int = 10_000,
    num_real: Optional[int] = None,
    batch_size: int = 100,
    subsets: int = 100,
    subset_size: int = 1000,
    subset_seed: int = 0,
) -> KID:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased cubic-kernel MMD² over random subsets.

    ``subset_seed`` fixes the subsets, so every rank and every evaluation draws the same ones (not
    ``seed``: that name is the run's seed, injected by the engine)."""
    ex = build_extractor(feature_extractor, info, "kid")
    return KID(
        ex, info=info, num_samples=num_samples, num_real=num_real, batch_size=batch_size,
        subsets=subsets, subset_size=subset_size, seed=subset_seed,
    )


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_metrics(register: Callable[..., None]) -> None:
    register("fid", fid, description="Fréchet distance of extractor features (float64), Heusel et al. 2017")
    register("kid", kid, description="Kernel Inception Distance: unbiased cubic-kernel MMD², Bińkowski et al. 2018")
