"""Test helper: small ctapipe DL1 HDF5 files written with ctapipe's own DataWriter.

A tiny :class:`ctapipe.io.EventSource` (built on ctapipe's ``ToyEventSource``) replays given images,
energies and primary ids as simulated events of one telescope with the given camera geometry.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from ctapipe.containers import (
    DL1CameraContainer,
    EventIndexContainer,
    ObservationBlockContainer,
    SchedulingBlockContainer,
    SimulatedShowerContainer,
    SimulationConfigContainer,
    SimulatedEventContainer,
    TriggerContainer,
)
from ctapipe.instrument import (
    CameraDescription,
    CameraReadout,
    OpticsDescription,
    ReflectorShape,
    SizeType,
    SubarrayDescription,
    TelescopeDescription,
)
from ctapipe.io import DataWriter
from ctapipe.io.toymodel import ToyEventSource


def subarray_for(geometry, focal_length_m: float = 4.75, tel_id: int = 1) -> SubarrayDescription:
    n = geometry.n_pixels
    readout = CameraReadout("toy", sampling_rate=1 * u.GHz, reference_pulse_shape=np.ones((1, 10)),
                            reference_pulse_sample_width=1 * u.ns, n_channels=1, n_pixels=n, n_samples=10)
    optics = OpticsDescription("toy-iact", size_type=SizeType.MST, n_mirrors=1,
                               equivalent_focal_length=focal_length_m * u.m,
                               effective_focal_length=focal_length_m * u.m, mirror_area=10 * u.m**2,
                               n_mirror_tiles=34, reflector_shape=ReflectorShape.DAVIES_COTTON)
    tel = TelescopeDescription("toy-iact", optics=optics, camera=CameraDescription("toy", geometry, readout))
    return SubarrayDescription("toy", {tel_id: [0, 0, 0] * u.m}, {tel_id: tel},
                               EarthLocation(lon=103 * u.deg, lat=51.8 * u.deg, height=675 * u.m))


class ReplaySource(ToyEventSource):
    """Replays arrays as simulated events (ctapipe's ToyEventSource supplies the rest of the interface)."""

    def __init__(self, subarray, images, energy_tev, primary_id, with_shower: bool = True, **kwargs):
        super().__init__(subarray=subarray, **kwargs)
        self.images, self.energy, self.primary = images, energy_tev, primary_id
        self.with_shower = with_shower
        self.max_events = len(images)

    # ToyEventSource's own observation_blocks uses a field that ctapipe 0.28's container lacks (ob_id)
    @property
    def observation_blocks(self):
        return {1: ObservationBlockContainer(obs_id=np.uint64(1), sb_id=np.uint64(1), producer_id="ganforge-astro tests")}

    @property
    def scheduling_blocks(self):
        return {1: SchedulingBlockContainer(sb_id=np.uint64(1), producer_id="ganforge-astro tests")}

    @property
    def simulation_config(self):
        return {1: SimulationConfigContainer()}

    def generate_event(self):
        from ctapipe.containers import ArrayEventContainer

        i = self.event_id
        tel_id = next(iter(self.subarray.tel))
        event = ArrayEventContainer(index=EventIndexContainer(obs_id=1, event_id=i), count=i)
        event.trigger = TriggerContainer(tels_with_trigger=[tel_id])
        event.trigger.tel[tel_id].time = event.trigger.time
        shower = None
        if self.with_shower:
            shower = SimulatedShowerContainer(energy=self.energy[i] * u.TeV, shower_primary_id=int(self.primary[i]))
        event.simulation = SimulatedEventContainer(shower=shower)
        event.dl1.tel[tel_id] = DL1CameraContainer(image=np.asarray(self.images[i], dtype=np.float32))
        return event


def write_dl1(path: Path, geometry, images: np.ndarray, energy_tev: np.ndarray, primary_id: np.ndarray,
              with_shower: bool = True, focal_length_m: float = 4.75) -> Path:
    from ctapipe.core import Provenance

    Provenance().start_activity("ganforge-astro tests")  # the writer records the current activity
    source = ReplaySource(subarray=subarray_for(geometry, focal_length_m), images=images, energy_tev=energy_tev,
                          primary_id=primary_id, with_shower=with_shower)
    with DataWriter(source, output_path=path, write_dl1_images=True,
                    write_dl1_parameters=False, overwrite=True) as writer:
        for event in source:
            writer(event)
    return path
