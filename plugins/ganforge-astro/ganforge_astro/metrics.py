"""Metrics ``hillas`` and ``size-energy``: IACT physics of generated images against real ones.

Both map samples back to camera pixels in photoelectrons (:func:`ganforge_astro.camera.camera_from_info`),
clean and parametrize them with ctapipe (:func:`ganforge_astro.physics.hillas_rows_with_conditions`), and
compare distributions with the pure functions of :mod:`ganforge_astro.physics`. The conditions each
image was generated with (``y``: log10 E and particle type) place it in its energy bin.

**Real-vs-real floor.** The real rows are split into two disjoint halves ``A`` and ``B`` (a seeded
permutation, ``floor_seed``). Generated rows are compared with ``A``; ``B`` is compared with ``A`` the
same way, and that value (``floor/...``) is what a perfect generator would score with ``|B|`` samples.
Set ``num_samples`` near ``|B|`` (half the real images used) for like-for-like sample sizes.

Distributed: the per-image rows are torchmetrics ``"cat"`` state, real rows arrive from the engine
(``real_reduce = {"rows": "cat"}``), so the values are the same on one process and under DDP.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from ganforge import DataInfo, GANMetric, NotApplicable
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ganforge_astro.camera import camera_from_info
from ganforge_astro.dataset import condition_index
from ganforge_astro.physics import (
    PARAMETERS,
    UNITS,
    Cleaning,
    compare,
    energy_edges,
    hillas_rows_with_conditions,
    size_energy_error,
    split_halves,
    survived,
)

N_PAR = len(PARAMETERS)
E_COL, P_COL = N_PAR, N_PAR + 1  # columns of log10 energy and particle type in a row


class _IACTMetric(Metric, GANMetric):
    """Shared: the camera from ``info``, rows of Hillas parameters + conditions, the real halves."""

    full_state_update = False
    needs_real = True
    real_reduce = {"rows": "cat"}
    metric_name = "iact"

    def __init__(self, info: Optional[DataInfo], num_samples: int, num_real: Optional[int], energy_bins: int,
                 picture_pe: float, boundary_pe: float, min_pixels: int, floor_seed: int) -> None:
        super().__init__()
        if info is None or "camera" not in (info.protocol or {}):
            raise NotApplicable(f"{self.metric_name}: dataset '{getattr(info, 'name', '?')}' is not an IACT "
                                "dataset (no info.protocol['camera']); use dataset.name=iact-toy or iact-file")
        conditions = info.protocol.get("conditions")
        self.columns = (condition_index(conditions, "log10_energy"), condition_index(conditions, "particle"))
        if None in self.columns:  # found by name: info.protocol["conditions"] describes every column of y
            raise NotApplicable(f"{self.metric_name}: needs the conditions log10_energy and particle in "
                                f"info.protocol['conditions'], dataset '{info.name}' has "
                                f"{[c.get('name') for c in conditions or []]}")
        for key, value, low in (("num_samples", num_samples, 2), ("energy_bins", energy_bins, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{self.metric_name}: {key}={value!r}; expected an integer >= {low}")
        if num_real is not None and num_real < 4:
            raise ValueError(f"{self.metric_name}: num_real={num_real!r}; expected >= 4 (two halves) or null")
        self.info = info
        self.camera = camera_from_info(info, self.metric_name)
        self.cleaning = Cleaning(picture_pe, boundary_pe, 2, min_pixels)
        self.num_samples = int(num_samples)
        self.num_real = num_real
        self.energy_bins = int(energy_bins)
        self.floor_seed = int(floor_seed)
        self.add_state("rows", [], dist_reduce_fx="cat")
        self.real_rows: Optional[np.ndarray] = None

    def _rows(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        pe = self.camera.decode(x)
        yy = None if y is None else y.detach().cpu().double().numpy()
        return torch.from_numpy(hillas_rows_with_conditions(self.camera, pe, yy, self.cleaning, self.columns))

    def real_key(self) -> dict[str, Any]:
        return {"metric": "iact-hillas-rows", "cleaning": self.cleaning.protocol(), "parameters": list(PARAMETERS)}

    def real_batch(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        return {"rows": self._rows(x, y)}

    def set_real(self, stats: dict[str, Any]) -> None:
        rows = np.asarray(stats["rows"], dtype=np.float64)
        if len(rows) < 4:
            raise ValueError(f"{self.metric_name}: got {len(rows)} real images; need at least 4 for the floor")
        self.real_rows = rows
        self.real_count = int(len(rows))
        self.reset()

    def update(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        if y is None:
            raise ValueError(f"{self.metric_name}: generated images arrived without conditions; the metric "
                             "needs the log10 E and particle type each image was generated with")
        self.rows.append(self._rows(x, y))

    def _sides(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(A, B, generated, energy edges)``; edges are quantiles of the real energies."""
        if self.real_rows is None:
            raise RuntimeError(f"{self.metric_name}: real data missing: call prepare_real() before compute()")
        gen = dim_zero_cat(self.rows).cpu().double().numpy() if self.rows else np.zeros((0, N_PAR + 2))
        a, b = split_halves(len(self.real_rows), self.floor_seed)
        edges = energy_edges(self.real_rows[:, E_COL], self.energy_bins)
        return self.real_rows[a], self.real_rows[b], gen, edges

    def _base_protocol(self) -> dict[str, Any]:
        return {
            "pipeline": "samples -> cartesian crop -> ctapipe image_from_cartesian_representation -> inverse "
                        "amplitude map (pe) -> ctapipe tailcuts_clean -> hillas_parameters, leakage_parameters",
            "cleaning": self.cleaning.protocol(),
            "energy_bins": f"{self.energy_bins} equal-population bins of the real log10 E (quantiles)",
            "floor": f"two disjoint halves A, B of the real images (permutation seed {self.floor_seed}); "
                     "generated compared with A, floor = B compared with A",
            "num_samples": self.num_samples,
            "num_real": self.num_real,
            "dtype": "float64",
        }


class HillasMetric(_IACTMetric):
    """Per Hillas parameter and per energy bin: W1 and KS of generated vs real, with the real-vs-real floor."""

    metric_name = "hillas"

    def __init__(self, *args: Any, parameters: tuple[str, ...] = PARAMETERS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unknown = [p for p in parameters if p not in PARAMETERS]
        if unknown:
            raise ValueError(f"hillas: parameters has {unknown}; expected names from {list(PARAMETERS)}")
        self.parameters = tuple(parameters)

    def compute(self) -> dict[str, float]:
        a, b, gen, edges = self._sides()
        out = compare(a, a[:, E_COL], gen, gen[:, E_COL], edges, self.parameters)
        floor = compare(a, a[:, E_COL], b, b[:, E_COL], edges, self.parameters)
        out.update({f"floor/{k}": v for k, v in floor.items()})
        out["survived"] = float(survived(gen[:, :N_PAR]).mean()) if len(gen) else float("nan")
        out["floor/survived"] = float(survived(b[:, :N_PAR]).mean())
        # one headline number: the mean over parameters of W1 / floor W1 (1 = as close as real data gets)
        ratios = [out[f"w1/{p}"] / floor[f"w1/{p}"] for p in self.parameters
                  if floor[f"w1/{p}"] > 0 and np.isfinite(out[f"w1/{p}"])]
        out["w1_over_floor"] = float(np.mean(ratios)) if ratios else float("nan")
        return out

    units = {f"{w}/{p}": UNITS[p] for p in PARAMETERS for w in ("w1", "floor/w1") if UNITS[p]}

    def protocol(self) -> dict[str, Any]:
        return {**self._base_protocol(), "metric": "hillas", "parameters": list(self.parameters),
                "distances": "scipy.stats.wasserstein_distance (W1), scipy.stats.ks_2samp statistic (KS), "
                             "on images that survive cleaning, each side separately"}


class SizeEnergyMetric(_IACTMetric):
    """Relative error of the median generated size against the real median, per particle and energy bin."""

    metric_name = "size-energy"

    def compute(self) -> dict[str, float]:
        a, b, gen, edges = self._sides()

        def parts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            ok = survived(rows[:, :N_PAR])
            return 10.0 ** rows[ok, 0], rows[ok, E_COL], rows[ok, P_COL]

        out = size_energy_error(*parts(a), *parts(gen), edges)
        floor = size_energy_error(*parts(a), *parts(b), edges)
        out.update({f"floor/{k}": v for k, v in floor.items()})
        return out

    units = {"rel_err": "fraction", "floor/rel_err": "fraction"}

    def protocol(self) -> dict[str, Any]:
        return {**self._base_protocol(), "metric": "size-energy",
                "size": "total photoelectrons of the cleaned image (Hillas intensity)",
                "error": "|median(generated size) / median(real size) - 1| per (particle, energy bin); rel_err: "
                         "mean over bins with images on both sides"}


class AcceptanceMetric(_IACTMetric):
    """TAIGA-style acceptance: the fraction of gamma-conditioned images the shipped classifier calls gammas."""

    metric_name = "acceptance"

    def __init__(self, *args: Any, threshold: float = 0.5, weights: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"acceptance: threshold={threshold!r}; expected a probability in (0, 1)")
        from ganforge_astro.classifier import GammaHadronClassifier

        self.threshold = float(threshold)
        self.classifier = GammaHadronClassifier.load(weights)

    def _accepted(self, rows: np.ndarray) -> tuple[float, int]:
        """Fraction of gamma rows accepted; images that did not survive cleaning count as rejected."""
        from ganforge_astro.classifier import features

        gamma = rows[rows[:, P_COL] == 0]
        if len(gamma) == 0:
            return float("nan"), 0
        p = self.classifier.gamma_probability(features(gamma))
        return float(np.mean(np.nan_to_num(p, nan=0.0) >= self.threshold)), int(len(gamma))

    def compute(self) -> dict[str, float]:
        a, b, gen, _ = self._sides()
        acc_gen, n_gen = self._accepted(gen)
        acc_real, n_real = self._accepted(np.concatenate([a, b]))
        acc_b, _ = self._accepted(b)
        return {"generated": acc_gen, "real": acc_real, "ratio": acc_gen / acc_real if acc_real > 0 else float("nan"),
                "floor/ratio": acc_b / acc_real if acc_real > 0 else float("nan"),
                "generated_gammas": float(n_gen), "real_gammas": float(n_real)}

    units = {"generated": "fraction", "real": "fraction"}
    context = ("generated_gammas", "real_gammas")

    def protocol(self) -> dict[str, Any]:
        meta = self.classifier.meta
        return {**self._base_protocol(), "metric": "acceptance", "threshold": self.threshold,
                "classifier": {k: meta[k] for k in ("model", "features", "accuracy_held_out", "weights_sha256",
                                                    "gamma_acceptance_held_out", "data") if k in meta},
                "rule": "gamma-conditioned images with p(gamma) >= threshold; images that fail cleaning are "
                        "rejected; ratio = generated / real (all real gammas); floor/ratio = real half B / all real"}


def hillas(info: DataInfo, num_samples: int = 1000, num_real: Optional[int] = 2000, energy_bins: int = 3,
           parameters: tuple[str, ...] = PARAMETERS, picture_pe: float = 6.0, boundary_pe: float = 3.0,
           min_pixels: int = 3, floor_seed: int = 0) -> HillasMetric:
    """Hillas-parameter distances (W1, KS) of generated vs real IACT images, per energy bin, with the floor.

    Args:
        info: The dataset's info (injected): an IACT dataset (``iact-toy``, ``iact-file``).
        num_samples: Generated images to evaluate, over all ranks.
        num_real: Real images (split into two halves for the floor); ``None``: the whole dataset.
        energy_bins: Equal-population bins of the real log10 E.
        parameters: Which of log10_size, length, width, r, skewness, kurtosis, leakage, alpha to compare.
        picture_pe: Tail-cuts picture threshold (photoelectrons).
        boundary_pe: Tail-cuts boundary threshold (photoelectrons).
        min_pixels: Images with fewer pixels after cleaning are not parametrized.
        floor_seed: Seed of the permutation that splits the real images into halves.
    """
    return HillasMetric(info, num_samples, num_real, energy_bins, picture_pe, boundary_pe, min_pixels, floor_seed,
                        parameters=tuple(parameters))


def size_energy(info: DataInfo, num_samples: int = 1000, num_real: Optional[int] = 2000, energy_bins: int = 3,
                picture_pe: float = 6.0, boundary_pe: float = 3.0, min_pixels: int = 3,
                floor_seed: int = 0) -> SizeEnergyMetric:
    """Relative error of the median generated image size per (particle, energy bin), with the floor.

    Args:
        info: The dataset's info (injected): an IACT dataset (``iact-toy``, ``iact-file``).
        num_samples: Generated images to evaluate, over all ranks.
        num_real: Real images (split into two halves for the floor); ``None``: the whole dataset.
        energy_bins: Equal-population bins of the real log10 E.
        picture_pe: Tail-cuts picture threshold (photoelectrons).
        boundary_pe: Tail-cuts boundary threshold (photoelectrons).
        min_pixels: Images with fewer pixels after cleaning are not parametrized.
        floor_seed: Seed of the permutation that splits the real images into halves.
    """
    return SizeEnergyMetric(info, num_samples, num_real, energy_bins, picture_pe, boundary_pe, min_pixels, floor_seed)


def acceptance(info: DataInfo, num_samples: int = 1000, num_real: Optional[int] = 2000, threshold: float = 0.5,
               weights: Optional[str] = None, picture_pe: float = 6.0, boundary_pe: float = 3.0, min_pixels: int = 3,
               floor_seed: int = 0) -> AcceptanceMetric:
    """Fraction of generated gamma images a gamma/hadron classifier accepts, next to the real gammas' fraction.

    Args:
        info: The dataset's info (injected): an IACT dataset (``iact-toy``, ``iact-file``).
        num_samples: Generated images to evaluate, over all ranks (the gamma-conditioned ones count).
        num_real: Real images; ``None``: the whole dataset.
        threshold: ``p(gamma)`` at which an image is accepted as a gamma.
        weights: Classifier weights (``.npz``); ``null``: the shipped ones, trained on iact-toy.
        picture_pe: Tail-cuts picture threshold (photoelectrons).
        boundary_pe: Tail-cuts boundary threshold (photoelectrons).
        min_pixels: Images with fewer pixels after cleaning are rejected.
        floor_seed: Seed of the permutation that splits the real images into halves.
    """
    return AcceptanceMetric(info, num_samples, num_real, 1, picture_pe, boundary_pe, min_pixels, floor_seed,
                            threshold=threshold, weights=weights)
