"""Images per second: the toy simulator and a generator, timed the same way (shared by the metric
``generation-speed`` and ``benchmarks/speed.py``).

What is timed, per image:

* **simulator** (:func:`time_simulator`): :class:`ganforge_astro.toy.ToySimulator` draws the event,
  renders it with ctapipe's toy model (Poisson photoelectrons and night-sky background), cleans it with
  ``tailcuts_clean``, then :func:`ganforge_astro.physics.image_parameters` cleans it again and
  computes the Hillas and leakage parameters: what it costs to get one analysed simulated image.
  The Hillas part is also reported alone (``hillas_images_per_s``), since generated images need it
  too before they can be analysed.
* **generator** (:func:`time_generator`): ``generate(batch)`` (noise, conditions, the network's
  forward pass) and decoding the batch to camera pixels in photoelectrons
  (:meth:`ganforge_astro.camera.CartesianCamera.decode`: cartesian → hexagonal, inverse amplitude
  map), which also waits for a GPU to finish (the tensor is copied to the host).

Both: one warm-up round that is not timed, then ``repeats`` timed rounds; the rate is the median over
rounds of images / seconds (``time.perf_counter``), so one slow round (another process on the core)
does not move it.

Reference: the TAIGA-IACT GAN generated about 400 images/s (:data:`PUBLISHED_IMAGES_PER_S`; Dubenskaya
et al., GRID'2021, arXiv:2211.15807), on their own hardware: a ratio to it compares set-ups, not
models.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ganforge_astro.camera import CartesianCamera
from ganforge_astro.physics import Cleaning, image_parameters

#: Images per second of the TAIGA-IACT GAN (GRID'2021, arXiv:2211.15807).
PUBLISHED_IMAGES_PER_S = 400.0

#: The toy simulator's parameters that ``iact-toy`` records in ``info.protocol`` (and their keys there).
_TOY_KEYS = ("spectral_index", "gamma_fraction", "max_impact_m", "light_pe_per_tev", "proton_light_fraction",
             "nsb_pe")


def _check(owner: str, key: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{owner}: {key}={value!r}; expected an integer >= {low}")
    return int(value)


def simulator_for(camera: CartesianCamera, protocol: Optional[Mapping[str, Any]]) -> tuple[Any, str]:
    """The toy simulator on ``camera``: with the data's own parameters when the dataset is ``iact-toy``
    (from its ``info.protocol``), else the defaults. Returns ``(simulator, what it is)``."""
    from ganforge_astro.toy import ToySimulator

    proto = dict(protocol or {})
    if proto.get("simulator", "").startswith("ganforge_astro.toy"):
        params = {k: proto[k] for k in _TOY_KEYS if k in proto}
        lo, hi = proto.get("energy_range_tev", (1.0, 100.0))
        sim = ToySimulator(camera, energy_min_tev=float(lo), energy_max_tev=float(hi),
                           cleaning=proto.get("cleaning") is not None, **params)
        return sim, "iact-toy with the dataset's parameters"
    return ToySimulator(camera), "iact-toy with its default parameters on the dataset's camera"


def time_simulator(simulator: Any, events: int, repeats: int, seed: int = 0,
                   cleaning: Optional[Cleaning] = None) -> dict[str, float]:
    """Simulate, clean and parametrize ``events`` images per round, ``repeats`` timed rounds after a
    one-event warm-up (ctapipe's first call builds its caches).

    Returns ``{"images_per_s", "hillas_images_per_s", "simulation_images_per_s"}`` (medians over rounds).
    """
    events, repeats = _check("time_simulator", "events", events, 1), _check("time_simulator", "repeats", repeats, 1)
    cleaning = cleaning or Cleaning()
    cam = simulator.camera
    warm = simulator.simulate(1, seed)
    image_parameters(cam.geometry, warm["pe"], cleaning, cam.focal_length_m)
    total, hillas, sim = [], [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        ev = simulator.simulate(events, seed + 1 + r)
        t1 = time.perf_counter()
        image_parameters(cam.geometry, ev["pe"], cleaning, cam.focal_length_m)
        t2 = time.perf_counter()
        total.append(events / (t2 - t0))
        sim.append(events / (t1 - t0))
        hillas.append(events / (t2 - t1))
    return {"images_per_s": statistics.median(total), "hillas_images_per_s": statistics.median(hillas),
            "simulation_images_per_s": statistics.median(sim)}


def time_generator(generate: Callable[[int], Any], decode: Callable[[Any], np.ndarray], batch: int,
                   repeats: int) -> dict[str, float]:
    """``repeats`` timed rounds of ``decode(generate(batch))`` after one untimed warm-up round.

    ``generate(n)`` returns ``n`` samples (or ``(samples, conditions)``); ``decode`` maps samples to
    pixel images in photoelectrons. Returns ``{"images_per_s", "network_images_per_s"}`` (medians;
    ``network``: ``generate`` alone, which on a GPU may return before the device has finished, so only
    the first number is a throughput).
    """
    batch, repeats = _check("time_generator", "batch", batch, 1), _check("time_generator", "repeats", repeats, 1)

    def samples(out: Any) -> Any:
        return out[0] if isinstance(out, tuple) else out

    pe = decode(samples(generate(batch)))  # warm-up: kernels, allocator, ctapipe's cartesian mapping
    if pe.shape[0] != batch:
        raise ValueError(f"time_generator: generate({batch}) gave {pe.shape[0]} images after decoding")
    total, network = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = samples(generate(batch))
        t1 = time.perf_counter()
        decode(x)
        t2 = time.perf_counter()
        total.append(batch / (t2 - t0))
        network.append(batch / (t1 - t0))
    return {"images_per_s": statistics.median(total), "network_images_per_s": statistics.median(network)}


def speed_values(generator: Mapping[str, float], simulator: Mapping[str, float]) -> dict[str, float]:
    """The reported numbers: both rates, their ratio and the generator's ratio to the published 400/s."""
    g, s = float(generator["images_per_s"]), float(simulator["images_per_s"])
    return {
        "generator_images_per_s": g,
        "simulator_images_per_s": s,
        "ratio": g / s,
        "ratio_to_published": g / PUBLISHED_IMAGES_PER_S,
        "generator_network_images_per_s": float(generator["network_images_per_s"]),
        "simulator_hillas_images_per_s": float(simulator["hillas_images_per_s"]),
    }
