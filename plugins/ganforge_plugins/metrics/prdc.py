"""Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020)."""

from __future__ import annotations

from typing import Annotated, Any, Callable, Optional

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from ganforge import ComponentRef, DataInfo, hookimpl
from ganforge_plugins.metrics.features import FeatureSetMetric, build_extractor

__all__ = ["PRDC", "kth_nn_distances", "prdc_from_features"]

def _chunk_rows(n_cols: int, budget: int = 1 << 24) -> int:
    """Rows per distance block so that a float64 block stays near 128 MiB."""
    return max(1, budget // max(n_cols, 1))


def kth_nn_distances(x: Tensor, k: int) -> Tensor:
    """Euclidean distance of each row of ``x`` to its k-th nearest *other* row (float64).

    The (k+1)-th smallest entry of each row of the full distance matrix: the row's own zero is
    one of them, so ties and duplicates are handled as the papers' reference code does.
    """
    x = x.double()
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {x.shape[0]}")
    out = []
    for i in range(0, x.shape[0], _chunk_rows(x.shape[0])):
        d = torch.cdist(x[i : i + _chunk_rows(x.shape[0])], x)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def prdc_from_features(real: Tensor, fake: Tensor, k: int, real_radii: Optional[Tensor] = None) -> dict[str, float]:
    """Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

    With B(x, r) the ball of radius r around x and NND_k the distance to the k-th nearest neighbour
    within the same set:

    * precision = 1/M Σ_j 1[∃i: Y_j ∈ B(X_i, NND_k(X_i))]
    * recall    = 1/N Σ_i 1[∃j: X_i ∈ B(Y_j, NND_k(Y_j))]
    * density   = 1/(kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))]
    * coverage  = 1/N Σ_i 1[∃j: Y_j ∈ B(X_i, NND_k(X_i))]

    for N real X and M fake Y; "∈ B" is a strict ``<`` as in Naeem et al.'s reference code.
    Fake rows are processed in blocks so memory stays bounded. ``real_radii`` may pass the real
    k-NN radii computed earlier (they depend on the real set and k only).
    """
    real, fake = real.double(), fake.to(real.device).double()
    r_real = kth_nn_distances(real, k) if real_radii is None else real_radii.to(real.device).double()
    r_fake = kth_nn_distances(fake, k)
    n, m = real.shape[0], fake.shape[0]
    in_real_ball_any = torch.zeros(m, dtype=torch.bool, device=real.device)
    density_sum = torch.zeros((), dtype=torch.float64, device=real.device)
    real_in_fake_ball = torch.zeros(n, dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((n,), float("inf"), dtype=torch.float64, device=real.device)
    step = _chunk_rows(n)
    for j in range(0, m, step):
        d = torch.cdist(fake[j : j + step], real)  # (block, N)
        inside = d < r_real[None, :]
        in_real_ball_any[j : j + step] = inside.any(1)
        density_sum += inside.sum()
        real_in_fake_ball |= (d < r_fake[j : j + step, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": float(in_real_ball_any.double().mean()),
        "recall": float(real_in_fake_ball.double().mean()),
        "density": float(density_sum / (k * m)),
        "coverage": float((nearest_fake < r_real).double().mean()),
    }


class PRDC(FeatureSetMetric):
    """Precision, recall, density and coverage on extractor features (see :func:`prdc_from_features`).

    Naeem et al. (2020) recommend k = 5 and 10,000 real and fake samples. Real features are shared
    with KID through the cache (same key when extractor and ``num_real`` agree).
    """

    units = {"precision": "fraction", "recall": "fraction", "density": "ratio", "coverage": "fraction"}

    metric_name = "prdc"
    needs_real = True

    def __init__(self, extractor: Any, *, nearest_k: int = 5, **kwargs: Any) -> None:
        super().__init__(extractor, **kwargs)
        if nearest_k < 1:
            raise ValueError(f"prdc: nearest_k must be >= 1, got {nearest_k}")
        self.nearest_k = int(nearest_k)
        self._real_radii: Optional[Tensor] = None
        self.fake_count: Optional[int] = None

    def set_real_features(self, feats: Tensor) -> None:
        self._real_radii = None  # O(N²): computed at the first compute, then kept
        super().set_real_features(feats)

    def compute(self) -> dict[str, float]:
        if self.real_features is None:
            raise RuntimeError("prdc: real features missing: call prepare_real() before compute()")
        fake = dim_zero_cat(self.fake_features)
        self.fake_count = int(fake.shape[0])
        real = self.real_features.to(fake.device)
        if self._real_radii is None:
            self._real_radii = kth_nn_distances(real, self.nearest_k).cpu()
        return prdc_from_features(real, fake, self.nearest_k, real_radii=self._real_radii)

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "nearest_k": self.nearest_k, "fake_count": self.fake_count, "distance": "euclidean"}


def prdc(
    info: DataInfo,
    feature_extractor: Annotated[str, ComponentRef("feature_extractor")] = "inception-v3",
    num_samples: int = 10_000,
    num_real: Optional[int] = 10_000,
    batch_size: int = 100,
    nearest_k: int = 5,
) -> PRDC:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) with k nearest neighbours."""
    ex = build_extractor(feature_extractor, info, "prdc")
    return PRDC(ex, info=info, num_samples=num_samples, num_real=num_real, batch_size=batch_size, nearest_k=nearest_k)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_metrics(register: Callable[..., None]) -> None:
    register("prdc", prdc, description="precision/recall (Kynkäänniemi 2019), density/coverage (Naeem 2020)")
