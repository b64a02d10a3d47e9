"""Metrics ``hillas``, ``size-energy`` and ``acceptance``: IACT physics of generated images against real ones.

All three map samples back to camera pixels in photoelectrons (:func:`ganforge_astro.camera.camera_from_info`),
clean and parametrize them with ctapipe (:func:`ganforge_astro.physics.hillas_rows_with_conditions`), and
compare distributions with the pure functions of :mod:`ganforge_astro.physics`. The conditions each
image was generated with (``y``: log10 E and particle type) place it in its energy bin.

**Real-vs-real floor.** The real rows are split into two disjoint halves ``A`` and ``B`` (a seeded
permutation, ``floor_seed``). Generated rows are compared with ``A``; ``B`` is compared with ``A`` the
same way, and that value (``floor/...``) is what a perfect generator would score with ``|B|`` samples.
Set ``num_samples`` near ``|B|`` (half the real images used) for like-for-like sample sizes.

Distributed: the per-image rows are torchmetrics ``"cat"`` state, real rows arrive from the engine
(``real_reduce = {"rows": "cat"}``), so the values are the same on one process and under DDP.

``hillas`` also draws pictures after each evaluation in training (a ``ganforge.PictureMetric``), and
``generation-speed`` (:class:`GenerationSpeedMetric`, a ``ganforge.GeneratorMetric``) times the
generator itself against the toy simulator (:mod:`ganforge_astro.speed`).
"""

from __future__ import annotations

from pathlib import Path
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
PICTURE_POOL = 300  # generated images the hillas metric keeps per rank and evaluation for its pictures
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
    """Per Hillas parameter and per energy bin: W1 and KS of generated vs real, with the real-vs-real floor.

    With ``pictures`` it is also a :class:`ganforge.PictureMetric`: after each evaluation in training
    it draws real vs generated camera images per particle and energy bin (hexagonal, ctapipe's
    ``CameraDisplay``) and the Hillas histograms overlaid (:mod:`ganforge_astro.pictures`). For that the
    real pass also keeps the real images and conditions (``real_reduce`` gains ``images`` and ``y``),
    and ``update()`` keeps the first :data:`PICTURE_POOL` generated images of this rank (plain
    attributes, not state: rank 0 draws from its own share; the histograms use every rank's rows).
    """

    metric_name = "hillas"

    def __init__(self, *args: Any, parameters: tuple[str, ...] = PARAMETERS, pictures: bool = True,
                 pictures_per_bin: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unknown = [p for p in parameters if p not in PARAMETERS]
        if unknown:
            raise ValueError(f"hillas: parameters has {unknown}; expected names from {list(PARAMETERS)}")
        if not isinstance(pictures_per_bin, int) or isinstance(pictures_per_bin, bool) or pictures_per_bin < 1:
            raise ValueError(f"hillas: pictures_per_bin={pictures_per_bin!r}; expected a positive integer")
        self.parameters = tuple(parameters)
        self.pictures = bool(pictures)
        self.pictures_per_bin = int(pictures_per_bin)
        if self.pictures:
            self.real_reduce = {"rows": "cat", "images": "cat", "y": "cat"}
        self.real_images: Optional[np.ndarray] = None
        self.real_y: Optional[np.ndarray] = None
        self._pool: list[tuple[np.ndarray, np.ndarray]] = []  # (pe, y) of generated images, this rank
        self._drawn: Optional[tuple[np.ndarray, dict[str, float]]] = None  # generated rows, values

    def real_batch(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        out = super().real_batch(x, y)
        if self.pictures:
            out["images"] = torch.from_numpy(self.camera.decode(x).astype(np.float32))
            out["y"] = (torch.full((len(x), 1), float("nan")) if y is None
                        else y.detach().cpu().float().reshape(len(x), -1))
        return out

    def set_real(self, stats: dict[str, Any]) -> None:
        super().set_real(stats)
        if self.pictures:
            self.real_images = np.asarray(stats["images"], dtype=np.float64)
            self.real_y = np.asarray(stats["y"], dtype=np.float64)

    def reset(self) -> None:
        super().reset()
        self._pool = []
        self._drawn = None

    def update(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        super().update(x, y)
        kept = sum(len(pe) for pe, _ in self._pool)
        if self.pictures and kept < PICTURE_POOL and y is not None:
            take = PICTURE_POOL - kept
            self._pool.append((self.camera.decode(x[:take]), y[:take].detach().cpu().double().numpy()))

    def draw_pictures(self, directory: Path, step: int) -> dict[str, Path]:
        """``cameras`` (real vs generated per particle and energy bin) and ``hillas`` (histograms) of the
        last ``compute()``, as ``<directory>/{cameras,hillas}_step_<step>.png``; ``{}`` without ``pictures``."""
        if not self.pictures or self._drawn is None or self.real_images is None or not self._pool:
            return {}
        from ganforge_astro.pictures import hillas_overlay, real_vs_generated

        gen_rows, values = self._drawn
        gen_pe = np.concatenate([pe for pe, _ in self._pool])
        gen_y = np.concatenate([y for _, y in self._pool])
        nan = float("nan")
        title = (f"step {step}: survived {values.get('survived', nan):.2f} (real {values.get('floor/survived', nan):.2f}), "
                 f"W1/floor {values.get('w1_over_floor', nan):.2f}")
        columns = getattr(self, "columns", None)
        directory = Path(directory)
        cams = real_vs_generated(self.camera, self.real_images, self.real_y, [("generated", gen_pe, gen_y)],
                                 directory / f"cameras_step_{step:07d}.png", energy_bins=self.energy_bins,
                                 per_side=self.pictures_per_bin, columns=columns, title=title)
        hist = hillas_overlay(self.real_rows, [("generated", gen_rows)], directory / f"hillas_step_{step:07d}.png",
                              title=title)
        return {"cameras": cams, "hillas": hist}

    def compute(self) -> dict[str, float]:
        out = self._compute()
        if self.pictures:
            self._drawn = (self._sides()[2], dict(out))
        return out

    def _compute(self) -> dict[str, float]:
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
                             "on images that survive cleaning, each side separately",
                "pictures": (f"cameras: {self.pictures_per_bin} real and generated images per particle and energy "
                             f"bin (generated from rank 0's first {PICTURE_POOL}); hillas: histograms of all "
                             "surviving real and generated images" if self.pictures else "none")}


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
           min_pixels: int = 3, floor_seed: int = 0, pictures: bool = True,
           pictures_per_bin: int = 2) -> HillasMetric:
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
        pictures: Draw camera images (real vs generated per particle and energy bin) and the Hillas
            histograms after every evaluation in training, for the run directory and the picture loggers.
        pictures_per_bin: Real and generated images per particle and energy bin in the camera picture.
    """
    return HillasMetric(info, num_samples, num_real, energy_bins, picture_pe, boundary_pe, min_pixels, floor_seed,
                        parameters=tuple(parameters), pictures=pictures, pictures_per_bin=pictures_per_bin)


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


class GenerationSpeedMetric(Metric, GANMetric):
    """Images per second of the generator being evaluated and of the toy simulator, on this process.

    A :class:`ganforge.GeneratorMetric`: the engine hands it ``generate(n)`` for each rank's share, and
    it times ``generate(batch)`` plus decoding to camera pixels in photoelectrons, and the toy simulator
    per image including cleaning and Hillas parametrization (:mod:`ganforge_astro.speed`). The samples
    ``update()`` receives are not used (``num_samples = 1``: the engine generates one per rank).

    Distributed: every rank times itself on its own device; each timing is a row of torchmetrics
    ``"cat"`` state, and the values are the **mean over ranks** of the per-process rates (a
    throughput per process, not the sum over processes). ``ganforge evaluate --world-size W`` replays
    the ``W`` ranks in one process, one after the other. The simulator is timed once per process (at
    its first evaluation: it does not change during training), the generator at every evaluation.
    """

    full_state_update = False
    needs_real = False
    num_samples = 1
    metric_name = "generation-speed"
    units = {"generator_images_per_s": "images/s", "simulator_images_per_s": "images/s",
             "generator_network_images_per_s": "images/s", "simulator_hillas_images_per_s": "images/s"}
    context = ("ranks", "threads")

    def __init__(self, info: Optional[DataInfo], batch: int, repeats: int, simulator_events: int) -> None:
        super().__init__()
        if info is None or "camera" not in (info.protocol or {}):
            raise NotApplicable(f"generation-speed: dataset '{getattr(info, 'name', '?')}' is not an IACT "
                                "dataset (no info.protocol['camera']); use dataset.name=iact-toy or iact-file")
        for key, value in (("batch", batch), ("repeats", repeats), ("simulator_events", simulator_events)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"generation-speed: {key}={value!r}; expected a positive integer")
        from ganforge_astro.speed import simulator_for

        self.info = info
        self.camera = camera_from_info(info, "generation-speed")
        self.batch, self.repeats, self.simulator_events = int(batch), int(repeats), int(simulator_events)
        self.simulator, self.simulator_source = simulator_for(self.camera, info.protocol)
        self.simulator_timing: Optional[dict[str, float]] = None
        self.devices: list[str] = []
        # one row per timed rank: generator, generator network only, simulator, Hillas alone, threads
        self.add_state("timings", [], dist_reduce_fx="cat")

    def observe_generator(self, generate: Any) -> None:
        """Time ``generate`` (and, on the first call, the simulator); one row of state per call."""
        from ganforge_astro.speed import time_generator, time_simulator

        gen = time_generator(generate, self.camera.decode, self.batch, self.repeats)
        if self.simulator_timing is None:
            self.simulator_timing = time_simulator(self.simulator, self.simulator_events, self.repeats, seed=0)
        sim = self.simulator_timing
        x, _ = generate(1)
        where = x.device.type
        if x.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(x.device)})"
        if where not in self.devices:
            self.devices.append(where)
        row = [gen["images_per_s"], gen["network_images_per_s"], sim["images_per_s"], sim["hillas_images_per_s"],
               float(torch.get_num_threads())]
        self.timings.append(torch.tensor([row], dtype=torch.float64, device=self.device))

    def update(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        """Generated samples are not what this metric measures (see :meth:`observe_generator`)."""

    def compute(self) -> dict[str, float]:
        from ganforge_astro.speed import speed_values

        if not self.timings:
            raise ValueError("generation-speed: nothing was timed; the metric measures the generator itself, "
                             "which only the evaluation of a model hands it (metrics.list of ganforge fit, "
                             "ganforge evaluate CKPT); samples read from files have no generator to time")
        t = dim_zero_cat(self.timings).double().cpu().numpy()
        mean = t.mean(axis=0)
        out = speed_values({"images_per_s": mean[0], "network_images_per_s": mean[1]},
                           {"images_per_s": mean[2], "hillas_images_per_s": mean[3]})
        out.update({"ranks": float(len(t)), "threads": float(mean[4])})
        return out

    def protocol(self) -> dict[str, Any]:
        from ganforge_astro.speed import PUBLISHED_IMAGES_PER_S

        return {
            "metric": "generation-speed",
            "generator": f"generate({self.batch}) (noise, conditions, forward pass in one batch, eval mode, "
                         "no_grad), then decoding to camera pixels in photoelectrons (cartesian -> hexagonal, "
                         "inverse amplitude map, copied to the host)",
            "simulator": f"{self.simulator_source}: ToySimulator.simulate (ctapipe toymodel, Poisson pe + NSB, "
                         "tailcuts_clean) then physics.image_parameters (tailcuts_clean, hillas_parameters, "
                         f"leakage_parameters), {self.simulator_events} events per round",
            "rounds": f"1 untimed warm-up round, then {self.repeats} timed rounds (time.perf_counter); each rate "
                      "is the median over rounds of images / seconds",
            "batch": self.batch,
            "repeats": self.repeats,
            "simulator_events": self.simulator_events,
            "device": ", ".join(self.devices) or "not timed yet",
            "torch_threads": torch.get_num_threads(),
            "distributed": "each rank times itself; values are the mean over ranks of the per-process rates",
            "simulator_timed": "once per process (first evaluation); the generator at every evaluation",
            "published_images_per_s": PUBLISHED_IMAGES_PER_S,
            "published": "TAIGA-IACT GAN, ~400 images/s (Dubenskaya et al., GRID'2021, arXiv:2211.15807), "
                         "their hardware",
            "ratio": "generator_images_per_s / simulator_images_per_s",
        }


def generation_speed(info: DataInfo, batch: int = 500, repeats: int = 3,
                     simulator_events: int = 100) -> GenerationSpeedMetric:
    """Images per second of the generator (with decoding to pixels) vs the toy simulator (with cleaning and
    Hillas) on the same process, and vs the published ~400 images/s of the TAIGA-IACT GAN.

    Args:
        info: The dataset's info (injected): an IACT dataset (``iact-toy``, ``iact-file``).
        batch: Images per timed generator round (one batch).
        repeats: Timed rounds of each side (after one untimed warm-up); the rate is their median.
        simulator_events: Events the toy simulator draws, cleans and parametrizes per round.
    """
    return GenerationSpeedMetric(info, batch, repeats, simulator_events)
