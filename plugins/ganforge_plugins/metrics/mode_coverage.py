"""Mode coverage on synthetic mixtures (``metrics: [{name: mode-coverage}]``).

The protocol of VEEGAN and PacGAN (``research/anchors.md`` §1.1): every generated sample is
assigned to its nearest true mode (Euclidean distance); it is *high-quality* when that distance
is at most ``threshold_std · σ``; a mode is *covered* when at least one high-quality sample
falls to it. Reported values:

``modes``
    Number of covered modes.
``high_quality``
    Fraction (0..1) of generated samples that are high-quality. A perfect generator scores
    about 0.989 in 2-D with the default 3σ (the 3σ disc holds 1 - e^{-4.5} of a 2-D Gaussian).
    The threshold is Euclidean, so in many dimensions 3σ holds almost nothing (VEEGAN used
    10σ for its 1200-D mixture): raise ``threshold_std`` there.
``kl_uniform``
    KL(p ‖ uniform), in nats, of the histogram ``p`` of high-quality samples over the modes:
    Σ p_k log(p_k · K), with 0 · log 0 = 0, so empty modes contribute nothing (their
    absence shows up as mass piled on the others). 0 for a perfectly balanced generator,
    log K when all high-quality samples fall to one mode. NaN when no sample is high-quality
    (the histogram is undefined).
``dominant_mode``
    Index k of the mode with the most high-quality samples (the lowest index on a tie); NaN
    when no sample is high-quality. Over an evaluation history it shows mode *hopping*, the
    failure of the lecture's ring figure (Metz et al. 2017, Fig. 1): a collapsed generator
    covers one or two modes at every evaluation, but a different one each time, so the
    covered modes per evaluation stay low while the modes seen over the run add up to K.
``dominant_share``
    Fraction (0..1) of the high-quality samples that fall to ``dominant_mode``: 1/K for a
    balanced generator, 1 for a fully collapsed one; NaN when no sample is high-quality.
``num_modes``
    K, the number of true modes, so ``modes / num_modes`` needs no second lookup.
``share_<k>`` (only with ``per_mode: true``)
    Fraction (0..1) of all generated samples that are high-quality at mode k: the per-mode
    histogram, one value per mode (``share_0`` … ``share_<K-1>``, zero-padded to sort), so
    the whole histogram history is in ``metrics.csv``. Their sum is ``high_quality``.

The state is the per-mode count of high-quality samples and the total sample count, both
summed across processes by torchmetrics, so ``compute()`` gives the same value on every rank
as one process evaluating all samples.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torchmetrics import Metric

from ganforge import DataInfo, GANMetric, NotApplicable, Register, hookimpl

# per_mode writes one column per mode to metrics.csv: fine for the ring (8) and grid (25), not
# for stacked digits (1000).
MAX_PER_MODE = 64

# Rows of generated samples per distance block, chosen so one block's (rows, K, dim) difference
# tensor stays near 16 MB even for high-dimensional mixtures.
CHUNK_ELEMENTS = 1 << 22


class ModeCoverage(Metric, GANMetric):
    """Covered modes, high-quality fraction and KL to uniform of generated samples.

    Args:
        modes: True mode centres, shape ``(K, *sample_shape)``.
        mode_std: Standard deviation σ of each mode.
        num_samples: Generated samples the engine evaluates (over all ranks).
        threshold_std: A sample is high-quality within ``threshold_std · σ`` of its nearest mode.
        dataset: Name of the dataset, recorded in the protocol.
        per_mode: Also report ``share_<k>`` for every mode (at most ``MAX_PER_MODE`` modes).
    """

    units = {"modes": "modes", "high_quality": "fraction", "kl_uniform": "nats", "dominant_mode": "index",
             "dominant_share": "fraction"}
    context = ("num_modes",)

    full_state_update = False
    is_differentiable = False
    higher_is_better: Optional[bool] = None
    needs_real = False

    hq_counts: torch.Tensor
    total: torch.Tensor
    modes: torch.Tensor

    def __init__(
        self,
        modes: torch.Tensor,
        mode_std: float,
        num_samples: int = 2500,
        threshold_std: float = 3.0,
        dataset: str = "",
        per_mode: bool = False,
    ) -> None:
        super().__init__()
        if modes.ndim < 2 or modes.shape[0] < 1:
            raise ValueError(f"mode-coverage: modes must have shape (num_modes, *sample_shape), got {tuple(modes.shape)}.")
        if not (isinstance(mode_std, (int, float)) and math.isfinite(mode_std) and mode_std > 0):
            raise ValueError(f"mode-coverage: the dataset's mode_std must be a finite number > 0, got {mode_std!r}.")
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
        if not (math.isfinite(threshold_std) and threshold_std > 0):
            raise ValueError(f"threshold_std must be a finite number > 0, got {threshold_std!r}.")
        self.num_samples = num_samples
        self.threshold_std = float(threshold_std)
        self.mode_std = float(mode_std)
        self.dataset = dataset
        self.num_modes = int(modes.shape[0])
        if per_mode and self.num_modes > MAX_PER_MODE:
            raise ValueError(
                f"mode-coverage: per_mode reports one value per mode, and this dataset has {self.num_modes} modes "
                f"(at most {MAX_PER_MODE}); use per_mode: false and read dominant_mode / dominant_share instead."
            )
        self.per_mode = bool(per_mode)
        # A buffer, so `.to(device)` moves the modes with the metric; not persistent, because
        # they come from the dataset, not from a checkpoint.
        self.register_buffer(
            "modes", modes.detach().to(torch.float32).reshape(self.num_modes, -1).clone(), persistent=False
        )
        self.add_state("hq_counts", default=torch.zeros(self.num_modes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def threshold(self) -> float:
        """The high-quality radius ``threshold_std · σ``."""
        return self.threshold_std * self.mode_std

    def update(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        """Count a batch of generated samples ``(N, *sample_shape)``; ``y`` is ignored."""
        n = x.shape[0]
        # math.prod, not -1: an empty batch has no size to infer
        flat = x.detach().reshape(n, math.prod(x.shape[1:])).to(torch.float32)
        dim = self.modes.shape[1]
        if flat.shape[1] != dim:
            raise ValueError(
                f"mode-coverage: generated samples have {flat.shape[1]} values each (shape {tuple(x.shape)}) "
                f"but the dataset's modes have {dim}; the generator's output does not match the dataset."
            )
        # Compute where the samples are; only the K counts travel to the state's device.
        modes = self.modes.to(flat.device)
        limit = self.threshold**2
        counts = torch.zeros(self.num_modes, dtype=torch.long, device=flat.device)
        rows = max(1, CHUNK_ELEMENTS // (self.num_modes * dim))
        for block in flat.split(rows):
            # Differences, not the |a|²+|b|²-2ab expansion (torch.cdist's fast path): that one
            # cancels catastrophically for samples within 0.01 of a mode at radius 1 in float32.
            d2 = (block[:, None, :] - modes[None, :, :]).square().sum(-1)
            nearest_d2, nearest = d2.min(dim=1)
            hq = nearest_d2 <= limit  # NaN samples compare False: counted in total, never high-quality
            counts += torch.bincount(nearest[hq], minlength=self.num_modes)
        self.hq_counts += counts.to(self.hq_counts.device)
        self.total += n

    def compute(self) -> dict[str, float]:
        """``modes``, ``high_quality``, ``kl_uniform``, ``dominant_mode``, ``dominant_share``,
        ``num_modes`` and with ``per_mode`` the ``share_<k>`` (collective under DDP)."""
        counts = self.hq_counts.to(torch.float64)
        total = int(self.total)
        n_hq = float(counts.sum())
        covered = float((counts > 0).sum())
        high_quality = n_hq / total if total > 0 else math.nan
        if n_hq > 0:
            p = counts[counts > 0] / n_hq
            # 0·log0 = 0: empty modes are left out of the sum. Clamp rounding noise below 0.
            kl = max(0.0, float((p * torch.log(p * self.num_modes)).sum()))
            # argmax of the first maximum: ties go to the lowest index, the same on every rank
            top = float(counts.max())
            dominant = float(int((counts == top).nonzero()[0, 0]))
            dominant_share = top / n_hq
        else:
            kl = dominant = dominant_share = math.nan
        out = {"modes": covered, "high_quality": high_quality, "kl_uniform": kl, "dominant_mode": dominant,
               "dominant_share": dominant_share, "num_modes": float(self.num_modes)}
        if self.per_mode:
            width = len(str(self.num_modes - 1))
            for k, c in enumerate(counts.tolist()):
                out[f"share_{k:0{width}d}"] = c / total if total > 0 else math.nan
        return out

    def protocol(self) -> dict[str, Any]:
        """The parameters that define the numbers."""
        return {
            "metric": "mode-coverage",
            "num_samples": self.num_samples,
            "num_modes": self.num_modes,
            "mode_std": self.mode_std,
            "threshold_std": self.threshold_std,
            "threshold": self.threshold,
            "distance": "euclidean",
            "assignment": "nearest mode; high-quality if distance <= threshold",
            "kl": "KL(p_hq || uniform), nats, 0*log0=0",
            "dominant": "mode with the most high-quality samples, lowest index on a tie; share of high-quality samples",
            "per_mode": self.per_mode,
            "dtype": "float32",
            "dataset": self.dataset,
        }


def mode_coverage(info: DataInfo, num_samples: int = 2500, threshold_std: float = 3.0,
                  per_mode: bool = False) -> ModeCoverage:
    """Modes covered, high-quality fraction and KL to uniform on a mixture with known modes.

    Args:
        info: The dataset's description (injected); needs ``modes`` and ``mode_std``.
        num_samples: Generated samples to evaluate (PacGAN and VEEGAN use 2,500).
        threshold_std: High-quality radius in units of the modes' σ (3 in PacGAN and VEEGAN).
        per_mode: Also report each mode's share of the samples (``share_<k>``), the histogram
            whose history shows mode hopping; for up to 64 modes.
    """
    if info.modes is None or info.mode_std is None:
        raise NotApplicable(
            f"mode-coverage needs a dataset with known true modes (info.modes and info.mode_std), such as "
            f"gaussian-ring or gaussian-grid; dataset '{info.name or '?'}' has none. Remove mode-coverage "
            f"from `metrics`, or use a mixture dataset."
        )
    return ModeCoverage(info.modes, info.mode_std, num_samples, threshold_std, dataset=info.name, per_mode=per_mode)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_metrics(register: Register) -> None:
    register(
        "mode-coverage",
        mode_coverage,
        description="Modes covered / high-quality fraction / KL to uniform on synthetic mixtures (PacGAN protocol).",
    )
