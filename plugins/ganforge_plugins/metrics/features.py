"""Shared machinery of the feature-space metrics (FID, KID, IS, PRDC, the classifier metrics).

A :class:`FeatureMetric` is a :class:`torchmetrics.Metric` (generated-sample state declared with
``add_state(..., dist_reduce_fx=...)``) and a :class:`ganforge.GANMetric` whose real statistics the
engine computes, reduces over ranks and caches (``real_reduce`` / ``real_batch`` / ``set_real``).

* **The extractor is not a submodule.** torchmetrics' ``state_dict`` recurses into children, so an
  Inception held as an attribute would add ~90 MB to every checkpoint (pitfalls §3.4). It is
  kept in a tuple and moved lazily to the device of the samples it receives.
* **Real statistics are plain attributes**, never torchmetrics states: a state would be summed or
  concatenated over ranks again at every ``compute()``.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from ganforge import DataInfo, GANMetric, build_component

__all__ = ["FeatureMetric", "FeatureSetMetric", "build_extractor", "canonical_order", "describe_preprocessing",
           "extractor_protocol"]

# -- feature extraction -----------------------------------------------------------------------------


def build_extractor(name: str, info: Optional[DataInfo], metric: str) -> nn.Module:
    """Build the registered feature extractor ``name`` (``info`` is passed to factories that take it)."""
    injected = {"info": info} if info is not None else {}
    return build_component("feature_extractor", name, name_key=f"metric '{metric}'.feature_extractor", **injected)


def _check_extractor(extractor: Any, metric: str) -> None:
    missing = [a for a in ("name", "feature_dim", "weights_sha256") if not hasattr(extractor, a)]
    if not callable(extractor) or missing:
        raise TypeError(
            f"{metric}: the feature extractor {type(extractor).__name__} does not follow the FeatureExtractor "
            f"protocol (callable, with name, feature_dim, weights_sha256); missing: {', '.join(missing) or 'call'}"
        )


def _module_device(m: Any) -> Optional[torch.device]:
    if isinstance(m, nn.Module):
        for t in list(m.parameters()) + list(m.buffers()):
            return t.device
    return None


def extractor_protocol(extractor: Any) -> dict[str, Any]:
    """What defines the extractor's features: its own ``protocol()`` when it has one (name, weights
    hash, preprocessing, ...), else the :class:`FeatureExtractor` attributes."""
    base = {
        "name": extractor.name,
        "feature_dim": int(extractor.feature_dim),
        "weights_sha256": extractor.weights_sha256,
    }
    own = extractor.protocol() if callable(getattr(extractor, "protocol", None)) else {}
    return {**base, **dict(own)}


def describe_preprocessing(extractor: Any) -> Any:
    """What the extractor does to samples before its network (resize filter, range): protocol text."""
    p = extractor_protocol(extractor).get("preprocess")
    if p is None:
        p = getattr(extractor, "preprocessing", None)
    return "not declared by the extractor" if p is None else p


class FeatureMetric(Metric, GANMetric):
    """Shared machinery: an extractor kept out of the module tree, batched extraction with checks,
    the real-statistics cache key, and the common protocol fields.

    Args:
        extractor: A built feature extractor (``nn.Module`` or callable with ``name``,
            ``feature_dim`` and ``weights_sha256``). Factories build it through the registry; tests
            may pass one directly.
        info: The dataset's :class:`DataInfo` (value range, for the range check and the protocol).
        num_samples: Generated samples to evaluate, over all ranks.
        num_real: Real samples to use over all ranks (``None``: the whole dataset).
        batch_size: Samples per extractor call (memory bound, not part of the protocol).
    """

    full_state_update = False  # states only accumulate: merge_state and single-pass sync are valid
    metric_name = "feature-metric"

    def __init__(
        self,
        extractor: Any,
        *,
        info: Optional[DataInfo] = None,
        num_samples: int = 10_000,
        num_real: Optional[int] = None,
        batch_size: int = 100,
    ) -> None:
        super().__init__()
        _check_extractor(extractor, self.metric_name)
        if int(extractor.feature_dim) < 1 and callable(getattr(extractor, "forward", None)):
            raise ValueError(
                f"{self.metric_name}: feature extractor '{extractor.name}' has feature_dim "
                f"{extractor.feature_dim}; build it with the dataset's info so its feature size is known"
            )
        if isinstance(extractor, nn.Module):
            extractor.eval().requires_grad_(False)
        # a tuple, not an attribute: nn.Module would register the extractor as a child and put its
        # weights into every state_dict / checkpoint (pitfalls §3.4)
        self._extractor_ref = (extractor,)
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if num_real is not None and num_real < 2:
            raise ValueError(f"num_real must be at least 2 (or null for the whole dataset), got {num_real}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.info = info
        self.num_samples = int(num_samples)
        self.num_real = num_real
        self.batch_size = int(batch_size)
        self.real_count: Optional[int] = None  # real samples actually used (set by prepare_real)
        self.cache_hit: Optional[bool] = None
        self._range_warned = False

    @property
    def extractor(self) -> Any:
        return self._extractor_ref[0]

    # -- extraction ---------------------------------------------------------------------------

    def _check_range(self, x: Tensor, which: str) -> None:
        """Warn once when image samples are far outside the dataset's value range: a wrong input
        range is the most common silent FID bug (pitfalls §3.3)."""
        info = self.info
        if self._range_warned or info is None or info.kind != "image" or x.numel() == 0:
            return
        lo, hi = info.value_range
        slack = 0.05 * (hi - lo)
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - slack or xmax > hi + slack:
            self._range_warned = True
            warnings.warn(
                f"{self.metric_name}: {which} samples span [{xmin:.3g}, {xmax:.3g}], outside the dataset's "
                f"value range [{lo}, {hi}]; the feature extractor expects that range, so the metric is "
                "probably wrong (check the data normalization or the generator's output activation)",
                stacklevel=3,
            )

    def _extract(self, x: Tensor, which: str, method: str = "forward") -> Tensor:
        """Run ``extractor.<method>`` on ``x`` in batches; returns ``(N, D)`` on ``x``'s device."""
        ex = self.extractor
        name = getattr(ex, "name", type(ex).__name__)
        if not torch.is_floating_point(x):
            x = x.float()
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).sum())
            raise ValueError(
                f"{self.metric_name}: {bad} of {x.shape[0]} {which} samples contain NaN or inf "
                "(for generated samples this usually means training diverged)"
            )
        self._check_range(x, which)
        dev = _module_device(ex)
        if dev is not None and dev != x.device:
            ex.to(x.device)  # not a submodule, so metric.to(device) does not move it
        fn = ex if method == "forward" else getattr(ex, method)
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                outs.append(fn(x[i : i + self.batch_size]))
        out = torch.cat(outs, 0) if outs else x.new_zeros((0, int(ex.feature_dim)))
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.metric_name}: feature extractor '{name}'.{method} returned shape {tuple(out.shape)} "
                f"for {x.shape[0]} samples; expected (N, D)"
            )
        if method == "forward" and out.shape[1] != int(ex.feature_dim):
            raise ValueError(
                f"{self.metric_name}: feature extractor '{name}' returned {out.shape[1]} features but "
                f"declares feature_dim={ex.feature_dim}"
            )
        if not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(1).sum())
            raise ValueError(
                f"{self.metric_name}: feature extractor '{name}' returned non-finite values for {bad} of "
                f"{out.shape[0]} {which} samples (finite inputs in range; the extractor's weights or "
                "dtype may be broken)"
            )
        return out

    def real_key(self) -> dict[str, Any]:
        """The real features depend on the extractor, its weights and its preprocessing (where the
        weights file lies does not change them; its hash does). ``num_samples`` (generated) is not
        part of it, so changing it reuses the real pass."""
        ex = {k: v for k, v in extractor_protocol(self.extractor).items() if k != "weights_file"}
        return {"feature_extractor": ex, "preprocessing": describe_preprocessing(self.extractor)}

    def real_batch(self, x: Tensor, y: Optional[Tensor] = None) -> dict[str, Tensor]:
        return {"features": self._extract(x, "real")}

    def protocol(self) -> dict[str, Any]:
        ex = self.extractor
        out: dict[str, Any] = {
            "metric": self.metric_name,
            "feature_extractor": ex.name,
            "weights_sha256": ex.weights_sha256,
            "feature_dim": int(ex.feature_dim),
            "preprocessing": describe_preprocessing(ex),
            "extractor": extractor_protocol(ex),
            "num_samples": self.num_samples,
            "num_real": self.num_real,
            "real_count": self.real_count,
            "dtype": "float64",
        }
        if self.info is not None:
            out["value_range"] = list(self.info.value_range)
        return out

    def _warn_low_count(self, n: int, which: str) -> None:
        d = int(self.extractor.feature_dim)
        if n < d:
            warnings.warn(
                f"{self.metric_name}: {n} {which} samples for {d}-dimensional features: the covariance is "
                f"singular and the estimate strongly biased (TTUR recommends more than {d}, and at least "
                "10,000 samples); label this number as a trend indicator only",
                stacklevel=3,
            )


# -- KID --------------------------------------------------------------------------------------------


def canonical_order(f: Tensor) -> Tensor:
    """A permutation that sorts rows by their projection on a fixed random direction.

    Feature sets arrive in an order that depends on the number of ranks (``all_gather`` concatenates
    rank by rank) and on merge order; metrics that draw subsets or splits by position (KID, IS)
    reorder rows this way first, so the same samples give the same number on 1 or 8 GPUs.
    Identical rows tie, and are interchangeable anyway.
    """
    g = torch.Generator().manual_seed(20180101)
    v = torch.randn(f.shape[1], generator=g, dtype=torch.float64).to(f.device)
    return torch.argsort(f.double() @ v, stable=True)


class FeatureSetMetric(FeatureMetric):
    """A metric on the whole sets of real and generated features (KID, PRDC).

    Real features: gathered from every rank once per run (or read from the cache), kept as a plain
    attribute. Generated features: a ``cat`` state, gathered across ranks in ``compute()``.
    """

    def __init__(self, extractor: Any, **kwargs: Any) -> None:
        super().__init__(extractor, **kwargs)
        self.add_state("fake_features", [], dist_reduce_fx="cat")
        self.real_features: Optional[Tensor] = None

    real_reduce = {"features": "cat"}

    def set_real(self, stats: dict[str, Any]) -> None:
        feats = stats["features"]
        if feats.shape[0] < 2:
            raise ValueError(f"{self.metric_name}: got {feats.shape[0]} real samples; need at least 2")
        self.set_real_features(feats)

    def set_real_features(self, feats: Tensor) -> None:
        self.real_features = feats.cpu()
        self.real_count = int(feats.shape[0])
        self.reset()

    def update(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        self.fake_features.append(self._extract(x, "generated"))

