"""Inception Score (Salimans et al. 2016) from a feature extractor's class logits."""

from __future__ import annotations

from typing import Annotated, Any, Callable, Optional

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from ganforge import ComponentRef, DataInfo, hookimpl
from ganforge_plugins.metrics.features import FeatureMetric, build_extractor, canonical_order

__all__ = ["InceptionScore", "inception_score_from_logits"]

def inception_score_from_logits(logits: Tensor, splits: int) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016), with p(y) the mean of p(y|x) within
    each of ``splits`` consecutive chunks; returns the mean and (population) std over chunks."""
    logp = torch.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    n = logits.shape[0]
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        pc, lpc = p[lo:hi], logp[lo:hi]
        log_py = pc.mean(0).log()
        # a class no sample gives mass to contributes 0·log 0 = 0, not NaN
        kl = torch.where(pc > 0, pc * (lpc - log_py), torch.zeros_like(pc)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


class InceptionScore(FeatureMetric):
    """Inception Score (Salimans et al. 2016) from the extractor's class logits (``classify(x)``).

    With ``inception-v3`` this is the usual IS; with ``digits-cnn`` a "digits IS" (at most 10).
    Reports ``is_mean`` and ``is_std`` over ``splits``. Needs no real data.
    """

    metric_name = "inception-score"
    needs_real = False

    def __init__(self, extractor: Any, *, splits: int = 10, **kwargs: Any) -> None:
        super().__init__(extractor, **kwargs)
        if not callable(getattr(self.extractor, "classify", None)):
            raise ValueError(
                f"inception-score needs class logits, but feature extractor '{self.extractor.name}' has no "
                "classify() method; use one that classifies (e.g. 'inception-v3' or 'digits-cnn')"
            )
        if splits < 1:
            raise ValueError(f"inception-score: splits must be >= 1, got {splits}")
        self.splits = int(splits)
        self.split_seed = 0
        self.add_state("logits", [], dist_reduce_fx="cat")

    def update(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        self.logits.append(self._extract(x, "generated", method="classify"))

    def split_order(self, logits: Tensor) -> Tensor:
        """Row order the splits are cut from: a seeded random permutation of the canonical order.

        Salimans et al. cut consecutive chunks of i.i.d. samples; a random permutation keeps the
        splits i.i.d., and starting from the canonical order makes them independent of how the
        samples were spread over ranks. (Cutting the canonical order itself would group similar
        samples into one split and bias the score.)
        """
        g = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(logits.shape[0], generator=g).to(logits.device)
        return canonical_order(logits)[perm]

    def compute(self) -> dict[str, float]:
        logits = dim_zero_cat(self.logits)
        if logits.shape[0] < self.splits:
            raise ValueError(f"inception-score: {logits.shape[0]} samples for {self.splits} splits")
        mean, std = inception_score_from_logits(logits[self.split_order(logits)], self.splits)
        return {"is_mean": mean, "is_std": std}

    def protocol(self) -> dict[str, Any]:
        out = {
            **super().protocol(),
            "splits": self.splits,
            "split_assignment": f"random permutation (seed {self.split_seed}) of the canonical order",
            "classes": getattr(self.extractor, "num_classes", None),
        }
        for k in ("num_real", "real_count", "feature_dim"):
            out.pop(k, None)  # IS uses class logits of generated samples only
        return out


# -- factories: their typed signatures are the config schemas ----------------------------------------


def inception_score(
    info: DataInfo,
    feature_extractor: Annotated[str, ComponentRef("feature_extractor")] = "inception-v3",
    num_samples: int = 10_000,
    batch_size: int = 100,
    splits: int = 10,
) -> InceptionScore:
    """Inception Score (Salimans et al. 2016) from the extractor's class logits; papers use 50,000 samples, 10 splits."""
    ex = build_extractor(feature_extractor, info, "inception-score")
    return InceptionScore(ex, info=info, num_samples=num_samples, batch_size=batch_size, splits=splits)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_metrics(register: Callable[..., None]) -> None:
    register("inception-score", inception_score, description="Inception Score from class logits, Salimans et al. 2016")
