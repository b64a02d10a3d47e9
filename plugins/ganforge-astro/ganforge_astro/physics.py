"""Image physics through ctapipe, as pure functions on numpy arrays (the metrics are thin wrappers).

:func:`image_parameters` cleans each pixel image with ctapipe's ``tailcuts_clean`` and parametrizes the
surviving pixels with ``hillas_parameters`` and ``leakage_parameters``. Lengths are converted from the
focal plane (m) to degrees on the sky with the camera's focal length. Images with fewer than
``min_pixels`` surviving pixels (or no light) are not parametrized: their row is NaN and
:func:`survived` is False for them; every comparison uses the surviving rows only and reports the
surviving fraction.

:func:`compare` gives, per parameter and per energy bin, the 1-D Wasserstein distance and the KS
statistic (``scipy.stats.wasserstein_distance``, ``scipy.stats.ks_2samp``).

ctapipe and scipy are imported inside the functions that use them: every ``ganforge`` command imports
this module to register the plugin, and importing ctapipe takes about two seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import astropy.units as u
import numpy as np

from ganforge_astro.camera import m_to_deg

# columns of image_parameters' rows; "size" is log10 of the cleaned image's total photoelectrons
PARAMETERS = ("log10_size", "length", "width", "r", "skewness", "kurtosis", "leakage", "alpha")
UNITS = {"log10_size": "log10(pe)", "length": "deg", "width": "deg", "r": "deg", "skewness": "",
         "kurtosis": "", "leakage": "fraction", "alpha": "deg"}


@dataclass(frozen=True)
class Cleaning:
    """Tail-cuts cleaning thresholds (photoelectrons), ctapipe's ``tailcuts_clean`` arguments."""

    picture_pe: float = 6.0
    boundary_pe: float = 3.0
    min_picture_neighbors: int = 2
    min_pixels: int = 3

    def __post_init__(self) -> None:
        if not (0 < self.boundary_pe <= self.picture_pe):
            raise ValueError(f"cleaning: need 0 < boundary_pe <= picture_pe, got boundary_pe={self.boundary_pe}, "
                             f"picture_pe={self.picture_pe}")
        if self.min_pixels < 1:
            raise ValueError(f"cleaning: min_pixels must be >= 1, got {self.min_pixels}")

    def mask(self, geometry: Any, image: np.ndarray) -> np.ndarray:
        from ctapipe.image import tailcuts_clean
        return tailcuts_clean(geometry, image, picture_thresh=self.picture_pe, boundary_thresh=self.boundary_pe,
                              min_number_picture_neighbors=self.min_picture_neighbors)

    def protocol(self) -> dict[str, Any]:
        return {"method": "ctapipe.image.tailcuts_clean", "picture_pe": self.picture_pe,
                "boundary_pe": self.boundary_pe, "min_number_picture_neighbors": self.min_picture_neighbors,
                "min_pixels": self.min_pixels}


def clean_images(geometry: Any, images: np.ndarray, cleaning: Cleaning) -> np.ndarray:
    """``images`` with every pixel outside the tail-cuts mask set to 0."""
    out = np.zeros_like(np.asarray(images, dtype=np.float64))
    for i, img in enumerate(np.asarray(images, dtype=np.float64)):
        m = cleaning.mask(geometry, img)
        out[i, m] = img[m]
    return out


def image_parameters(geometry: Any, images: np.ndarray, cleaning: Cleaning, focal_length_m: float) -> np.ndarray:
    """Rows of :data:`PARAMETERS` for pixel images ``(N, n_pixels)`` in photoelectrons (NaN: not parametrized).

    ``alpha`` is the angle between the major axis and the line from the camera centre to the centroid
    (0° for a shower pointing at an on-axis source), folded into [0°, 90°]. ``leakage`` is ctapipe's
    ``intensity_width_2``: the fraction of light in the two outermost pixel rings.
    """
    from ctapipe.image import hillas_parameters, leakage_parameters
    images = np.asarray(images, dtype=np.float64)
    rows = np.full((len(images), len(PARAMETERS)), np.nan)
    for i, img in enumerate(images):
        if not np.all(np.isfinite(img)):
            continue
        mask = cleaning.mask(geometry, img)
        if mask.sum() < cleaning.min_pixels:
            continue
        clean = np.where(mask, img, 0.0)
        size = clean.sum()
        if not size > 0:
            continue
        h = hillas_parameters(geometry[mask], img[mask])
        leak = leakage_parameters(geometry, clean, mask)
        psi = h.psi.to_value(u.rad)
        phi = h.phi.to_value(u.rad)
        alpha = np.degrees(abs(np.arctan(np.tan(psi - phi))))  # folded into [0°, 90°]
        rows[i] = (
            np.log10(size),
            m_to_deg(h.length.to_value(u.m), focal_length_m),
            m_to_deg(h.width.to_value(u.m), focal_length_m),
            m_to_deg(h.r.to_value(u.m), focal_length_m),
            h.skewness,
            h.kurtosis,
            leak.intensity_width_2,
            alpha,
        )
    return rows


def survived(rows: np.ndarray) -> np.ndarray:
    """Which rows were parametrized (passed cleaning)."""
    return np.all(np.isfinite(np.asarray(rows)), axis=1)


def energy_edges(log10_energy: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` equal-population bins of log10 energy (quantiles of the given energies), outer edges open."""
    e = np.asarray(log10_energy, dtype=np.float64)
    e = e[np.isfinite(e)]
    if bins < 1:
        raise ValueError(f"energy_bins must be >= 1, got {bins}")
    if len(e) == 0:
        raise ValueError("no finite energies to place energy bins on")
    edges = np.quantile(e, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def bin_index(log10_energy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, np.asarray(log10_energy), side="right") - 1, 0, len(edges) - 2)


def distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(W1, KS)`` between two 1-D samples; NaN when either is empty."""
    from scipy.stats import ks_2samp, wasserstein_distance
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    return float(wasserstein_distance(a, b)), float(ks_2samp(a, b).statistic)


def compare(reference: np.ndarray, ref_energy: np.ndarray, other: np.ndarray, other_energy: np.ndarray,
            edges: np.ndarray, parameters: Sequence[str] = PARAMETERS) -> dict[str, float]:
    """W1 and KS of every parameter, over all energies (``w1/<p>``) and per energy bin (``w1/<p>/e<k>``).

    Rows that were not parametrized are left out (on each side separately).
    """
    out: dict[str, float] = {}
    ra, oa = survived(reference), survived(other)
    rb, ob = bin_index(ref_energy, edges), bin_index(other_energy, edges)
    for j, p in enumerate(PARAMETERS):
        if p not in parameters:
            continue
        out[f"w1/{p}"], out[f"ks/{p}"] = distances(reference[ra, j], other[oa, j])
        for k in range(len(edges) - 1):
            out[f"w1/{p}/e{k}"], out[f"ks/{p}/e{k}"] = distances(reference[ra & (rb == k), j],
                                                                  other[oa & (ob == k), j])
    return out


def size_energy_error(reference_size: np.ndarray, ref_energy: np.ndarray, ref_group: np.ndarray,
                      other_size: np.ndarray, other_energy: np.ndarray, other_group: np.ndarray,
                      edges: np.ndarray) -> dict[str, float]:
    """Relative error of the median size per (group, energy bin): ``|median_o / median_r − 1|``.

    ``*_size`` are linear sizes (pe) of parametrized images, ``*_group`` the particle type (0 gamma,
    1 proton), so a change in composition never masquerades as a size error. Returns the per-bin errors
    (``rel_err/<group>/e<k>``) and their mean over the bins that have images on both sides (``rel_err``).
    """
    out: dict[str, float] = {}
    errs = []
    rb, ob = bin_index(ref_energy, edges), bin_index(other_energy, edges)
    names = {0: "gamma", 1: "proton"}
    for g in np.unique(np.concatenate([ref_group, other_group])).astype(int):
        for k in range(len(edges) - 1):
            r = reference_size[(ref_group == g) & (rb == k)]
            o = other_size[(other_group == g) & (ob == k)]
            key = f"rel_err/{names.get(g, g)}/e{k}"
            if len(r) == 0 or len(o) == 0 or not np.median(r) > 0:
                out[key] = float("nan")
                continue
            out[key] = float(abs(np.median(o) / np.median(r) - 1.0))
            errs.append(out[key])
    out["rel_err"] = float(np.mean(errs)) if errs else float("nan")
    return out


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of ``range(n)`` from a seeded permutation (the real-vs-real floor)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def hillas_rows_with_conditions(camera: Any, pe: np.ndarray, y: Optional[np.ndarray], cleaning: Cleaning,
                                columns: Optional[tuple[int, int]] = None) -> np.ndarray:
    """``[PARAMETERS..., log10_energy, particle]`` rows; energy and particle NaN when ``y`` is missing.

    ``columns``: the columns of log10 E and of the particle class in ``y``; by default the dataset's
    layout (:mod:`ganforge_astro.dataset`: the particle class in column 0, log10 E in column 1)."""
    from ganforge_astro.dataset import ENERGY_COL, PARTICLE_COL

    rows = image_parameters(camera.geometry, pe, cleaning, camera.focal_length_m)
    cond = np.full((len(pe), 2), np.nan)
    if y is not None:
        y = np.asarray(y, dtype=np.float64).reshape(len(pe), -1)
        for out_col, col in enumerate(columns or (ENERGY_COL, PARTICLE_COL)):
            if col < y.shape[1]:
                cond[:, out_col] = y[:, col]
    return np.concatenate([rows, cond], axis=1)
