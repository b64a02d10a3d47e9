"""``iact-toy``: a seeded toy simulator of IACT camera images, on a CPU in seconds.

Not a shower simulation: a documented stand-in with the structure real images have, so GANs and
their physics metrics can be developed without CORSIKA. Shower light comes from ctapipe's toy image
models (:mod:`ctapipe.image.toymodel`) on the TAIGA-IACT-like camera of :mod:`ganforge_astro.camera`;
ctapipe's ``generate_image`` adds Poisson photoelectrons and Poisson night-sky background (and
subtracts the mean background, like a pedestal).

Per event, from one ``numpy.random.Generator`` seeded with the run's seed:

* **particle**: gamma with probability ``gamma_fraction``, else proton;
* **energy**: power law ``dN/dE ∝ E^-spectral_index`` on ``[energy_min_tev, energy_max_tev]``
  (inverse-CDF sampling);
* **impact**: distance ``ρ`` uniform over the disc of radius ``max_impact_m`` (``ρ = R√u``), azimuth
  ``φ`` uniform;
* **light** (mean photoelectrons before Poisson): ``size = light_pe_per_tev · E · pool(ρ) · k``, with
  the Cherenkov light pool ``pool(ρ) = 1`` for ``ρ ≤ 120 m`` and ``exp(−(ρ − 120 m)/80 m)`` beyond, a
  log-normal event-to-event factor (σ = 0.2), and ``k = 1`` for gammas, ``proton_light_fraction`` for
  protons (hadron showers put less of their energy into Cherenkov light);
* **gamma** (a point source at the camera centre): one ``SkewedGaussian`` (skewness 0.3, the tail
  pointing away from the source) with centroid ``0.0085°/m · ρ`` from the centre in the direction ``φ``
  and the major axis pointing at the centre (``ψ = φ``); ``length = (0.16° + 0.12°·log10 E + 0.001°/m·ρ)``,
  ``width = (0.08° + 0.04°·log10 E)``, each times a log-normal factor (σ = 0.1), ``E`` in TeV (gammas of a
  few TeV cover several of the 0.36° pixels after cleaning: median 8, 90 % ≤ 16);
* **proton** (diffuse, wider, irregular): a main ``Gaussian`` with random centroid in the inner 3°,
  random orientation, ``length = 0.25° + 0.15°·log10 E``, ``width = length · U(0.45, 0.9)``, holding
  70 % of the light, plus 1-3 compact ``Gaussian`` sub-clusters (0.08° × 0.06°, random orientation)
  within 1° of the centroid sharing the other 30 % (sub-showers from pions; the irregularity that
  gamma/hadron separation uses);
* **noise**: Poisson NSB of ``nsb_pe`` photoelectrons per pixel (mean subtracted);
* **cleaning** (optional, ``cleaning=True``): ctapipe's ``tailcuts_clean`` (picture 6 pe, boundary
  3 pe, 2 picture neighbours); pixels outside the mask are 0.

Conditions: the particle type (the class), ``log10 E``, and with ``impact_condition=True`` the impact distance (see
:mod:`ganforge_astro.dataset`).

ctapipe and scipy are imported inside the functions that use them: every ``ganforge`` command imports
this module to register the plugin, and importing ctapipe takes about two seconds.
"""

from __future__ import annotations

import math
import time
from typing import Any

import astropy.units as u
import numpy as np

from ganforge_astro.camera import Amplitude, CartesianCamera, deg_to_m, toy_camera, toy_camera_spec
from ganforge_astro.dataset import IACTDataset, condition_columns
from ganforge_astro.physics import Cleaning, clean_images

LIGHT_POOL_M = 120.0
LIGHT_POOL_FALLOFF_M = 80.0
GAMMA_DISP_DEG_PER_M = 0.0085
GAMMA_SKEWNESS = 0.3
PROTON_MAIN_FRACTION = 0.7


def composite_model(models: list, weights: list[float]) -> "ImageModel":
    """A weighted sum of ctapipe image models (one proton shower and its sub-clusters).

    The class is made on first use: ctapipe takes seconds to import, and every ganforge command
    imports this module to register the dataset."""
    global _Composite
    if _Composite is None:
        from ctapipe.image.toymodel import ImageModel

        class CompositeModel(ImageModel):
            def __init__(self, models: list, weights: list[float]) -> None:
                self.models = models
                self.weights = np.asarray(weights, dtype=float) / float(np.sum(weights))

            def pdf(self, x: Any, y: Any) -> np.ndarray:
                return sum(w * m.pdf(x, y) for m, w in zip(self.models, self.weights))

        _Composite = CompositeModel
    return _Composite(models, weights)


_Composite: Any = None


def power_law(rng: np.random.Generator, n: int, index: float, e_min: float, e_max: float) -> np.ndarray:
    """``n`` energies from ``dN/dE ∝ E^-index`` on ``[e_min, e_max]`` (inverse CDF)."""
    uu = rng.random(n)
    if abs(index - 1.0) < 1e-12:
        return e_min * (e_max / e_min) ** uu
    a = 1.0 - index
    return (e_min**a + uu * (e_max**a - e_min**a)) ** (1.0 / a)


def light_pool(impact_m: np.ndarray) -> np.ndarray:
    return np.where(impact_m <= LIGHT_POOL_M, 1.0, np.exp(-(impact_m - LIGHT_POOL_M) / LIGHT_POOL_FALLOFF_M))


class ToySimulator:
    """The event generator described in the module docstring (parameters as in :func:`iact_toy`)."""

    def __init__(self, camera: CartesianCamera, *, spectral_index: float = 2.0, energy_min_tev: float = 1.0,
                 energy_max_tev: float = 100.0, gamma_fraction: float = 0.5, max_impact_m: float = 200.0,
                 light_pe_per_tev: float = 300.0, proton_light_fraction: float = 0.35, nsb_pe: float = 2.0,
                 cleaning: bool = True) -> None:
        checks = [
            (spectral_index > 0, "spectral_index", spectral_index, "a positive spectral index, e.g. 2.0"),
            (0 < energy_min_tev < energy_max_tev, "energy_min_tev/energy_max_tev",
             (energy_min_tev, energy_max_tev), "0 < energy_min_tev < energy_max_tev"),
            (0.0 <= gamma_fraction <= 1.0, "gamma_fraction", gamma_fraction, "a fraction in [0, 1]"),
            (max_impact_m > 0, "max_impact_m", max_impact_m, "a positive distance in metres"),
            (light_pe_per_tev > 0, "light_pe_per_tev", light_pe_per_tev, "a positive number of photoelectrons"),
            (proton_light_fraction > 0, "proton_light_fraction", proton_light_fraction, "a positive factor"),
            (nsb_pe >= 0, "nsb_pe", nsb_pe, "a non-negative mean photoelectron count"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"dataset iact-toy: {key}={value!r}; expected {expected}")
        self.camera = camera
        self.spectral_index = float(spectral_index)
        self.energy_min_tev = float(energy_min_tev)
        self.energy_max_tev = float(energy_max_tev)
        self.gamma_fraction = float(gamma_fraction)
        self.max_impact_m = float(max_impact_m)
        self.light_pe_per_tev = float(light_pe_per_tev)
        self.proton_light_fraction = float(proton_light_fraction)
        self.nsb_pe = float(nsb_pe)
        self.cleaning = Cleaning() if cleaning else None

    def _m(self, deg: float) -> u.Quantity:
        return deg_to_m(deg, self.camera.focal_length_m) * u.m

    def shower(self, rng: np.random.Generator, proton: bool, log10_e: float, impact_m: float,
               azimuth: float) -> ImageModel:
        """The ctapipe image model of one event (no light yet)."""
        from ctapipe.image.toymodel import Gaussian, ImageModel, SkewedGaussian
        if not proton:
            disp = GAMMA_DISP_DEG_PER_M * impact_m
            length = (0.16 + 0.12 * log10_e + 0.001 * impact_m) * math.exp(0.1 * rng.standard_normal())
            width = (0.08 + 0.04 * log10_e) * math.exp(0.1 * rng.standard_normal())
            return SkewedGaussian(x=self._m(disp * math.cos(azimuth)), y=self._m(disp * math.sin(azimuth)),
                                  length=self._m(length), width=self._m(width), psi=azimuth * u.rad,
                                  skewness=GAMMA_SKEWNESS)
        r, a = 3.0 * math.sqrt(rng.random()), 2 * math.pi * rng.random()
        cx, cy = r * math.cos(a), r * math.sin(a)
        length = 0.25 + 0.15 * log10_e
        models: list[ImageModel] = [Gaussian(x=self._m(cx), y=self._m(cy), length=self._m(length),
                                             width=self._m(length * rng.uniform(0.45, 0.9)),
                                             psi=rng.uniform(0, 180) * u.deg)]
        n_sub = int(rng.integers(1, 4))
        for _ in range(n_sub):
            d, b = rng.random(), 2 * math.pi * rng.random()
            models.append(Gaussian(x=self._m(cx + d * math.cos(b)), y=self._m(cy + d * math.sin(b)),
                                   length=self._m(0.08), width=self._m(0.06), psi=rng.uniform(0, 180) * u.deg))
        weights = [PROTON_MAIN_FRACTION] + [(1 - PROTON_MAIN_FRACTION) / n_sub] * n_sub
        return composite_model(models, weights)

    def simulate(self, num_events: int, seed: int) -> dict[str, np.ndarray]:
        """``num_events`` events: ``pe`` ``(N, n_pixels)`` and their ``energy_tev``, ``particle``, ``impact_m``."""
        rng = np.random.default_rng(seed)
        proton = rng.random(num_events) >= self.gamma_fraction
        energy = power_law(rng, num_events, self.spectral_index, self.energy_min_tev, self.energy_max_tev)
        impact = self.max_impact_m * np.sqrt(rng.random(num_events))
        azimuth = 2 * math.pi * rng.random(num_events)
        jitter = np.exp(0.2 * rng.standard_normal(num_events))
        light = self.light_pe_per_tev * energy * light_pool(impact) * jitter
        light = np.where(proton, light * self.proton_light_fraction, light)
        geom = self.camera.geometry
        pe = np.empty((num_events, geom.n_pixels), dtype=np.float64)
        for i in range(num_events):
            model = self.shower(rng, bool(proton[i]), math.log10(energy[i]), float(impact[i]), float(azimuth[i]))
            pe[i] = model.generate_image(geom, intensity=float(light[i]), nsb_level_pe=self.nsb_pe, rng=rng)[0]
        if self.cleaning is not None:
            pe = clean_images(geom, pe, self.cleaning)
        return {"pe": pe, "energy_tev": energy, "particle": proton.astype(np.int64), "impact_m": impact}

    def protocol(self) -> dict[str, Any]:
        return {
            "simulator": "ganforge_astro.toy (ctapipe.image.toymodel)",
            "spectral_index": self.spectral_index, "energy_range_tev": [self.energy_min_tev, self.energy_max_tev],
            "gamma_fraction": self.gamma_fraction, "max_impact_m": self.max_impact_m,
            "light_pe_per_tev": self.light_pe_per_tev, "proton_light_fraction": self.proton_light_fraction,
            "nsb_pe": self.nsb_pe, "cleaning": None if self.cleaning is None else self.cleaning.protocol(),
        }


def iact_toy(
    num_samples: int = 2000,
    seed: int = 0,
    spectral_index: float = 2.0,
    energy_min_tev: float = 1.0,
    energy_max_tev: float = 100.0,
    gamma_fraction: float = 0.5,
    max_impact_m: float = 200.0,
    light_pe_per_tev: float = 300.0,
    proton_light_fraction: float = 0.35,
    nsb_pe: float = 2.0,
    cleaning: bool = True,
    impact_condition: bool = False,
    scale_pe: float = 2.0,
    max_pe: float = 20_000.0,
) -> IACTDataset:
    """Toy IACT images (gamma and proton showers) on a 559-pixel TAIGA-IACT-like hexagonal camera.

    Args:
        num_samples: Events to simulate (about 1-2 ms each on one CPU core).
        seed: Seed of the simulation (injected by the engine: the run's seed).
        spectral_index: Power-law index of the energy spectrum, ``dN/dE ∝ E^-index``.
        energy_min_tev: Lowest primary energy (TeV).
        energy_max_tev: Highest primary energy (TeV).
        gamma_fraction: Probability that an event is a gamma (else a proton).
        max_impact_m: Impact distances are uniform over a disc of this radius (m).
        light_pe_per_tev: Mean photoelectrons per TeV of a gamma inside the light pool.
        proton_light_fraction: A proton's light relative to a gamma of the same energy.
        nsb_pe: Mean night-sky background per pixel (photoelectrons, Poisson).
        cleaning: Apply tail-cuts cleaning (6/3 pe) to the images.
        impact_condition: Add the impact distance (in 100 m) as a third condition.
        scale_pe: Amplitude map: photoelectrons where it turns from linear to logarithmic.
        max_pe: Amplitude map: photoelectrons that map to 1 (larger values are clipped).
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"dataset iact-toy: num_samples={num_samples!r}; expected a positive integer")
    spec = toy_camera_spec()
    # cleaned images have no negative values: empty pixels at -1 (see ganforge_astro.camera)
    camera = CartesianCamera(toy_camera(), spec["focal_length_m"], Amplitude(scale_pe, max_pe, offset=cleaning), spec)
    sim = ToySimulator(camera, spectral_index=spectral_index, energy_min_tev=energy_min_tev,
                       energy_max_tev=energy_max_tev, gamma_fraction=gamma_fraction, max_impact_m=max_impact_m,
                       light_pe_per_tev=light_pe_per_tev, proton_light_fraction=proton_light_fraction,
                       nsb_pe=nsb_pe, cleaning=cleaning)
    t0 = time.perf_counter()
    ev = sim.simulate(num_samples, seed)
    seconds = time.perf_counter() - t0
    y = condition_columns(np.log10(ev["energy_tev"]), ev["particle"], ev["impact_m"] if impact_condition else None)
    ds = IACTDataset(ev["pe"], y, camera, "iact-toy",
                     {**sim.protocol(), "seed": int(seed), "impact_condition": bool(impact_condition)})
    ds.simulation_seconds = seconds  # timing only, not part of the protocol (it varies between machines)
    return ds
