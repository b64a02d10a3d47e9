"""The dataset the networks train on: cartesian camera images with their physical conditions.

Conditions (``y``, float32, one row per image; described in ``info.protocol["conditions"]``):

====  ==================  ==========================================================================
col   name                meaning
====  ==================  ==========================================================================
0     ``log10_energy``    log10 of the primary energy in TeV (continuous)
1     ``particle``        particle type as a number: 0 gamma, 1 proton (a class, given as a column)
2     ``impact_100m``     optional: impact distance from the telescope in units of 100 m
====  ==================  ==========================================================================

The particle type is a column of the continuous condition vector, not ``info.num_classes``, because
ganforge's image networks (and ``DataInfo``) take class labels *or* continuous conditions, not both;
with a 0/1 column their linear condition embedding is exactly a class embedding plus an energy
projection.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from ganforge import DataInfo

from ganforge_astro.camera import CartesianCamera

PARTICLES = ("gamma", "proton")

CONDITIONS = (
    {"name": "log10_energy", "kind": "continuous", "unit": "log10(E/TeV)"},
    {"name": "particle", "kind": "class as a number", "values": {"0": "gamma", "1": "proton"}},
    {"name": "impact_100m", "kind": "continuous", "unit": "100 m", "optional": True},
)


def condition_columns(log10_energy: np.ndarray, particle: np.ndarray, impact_m: Optional[np.ndarray]) -> np.ndarray:
    cols = [np.asarray(log10_energy, dtype=np.float64), np.asarray(particle, dtype=np.float64)]
    if impact_m is not None:
        cols.append(np.asarray(impact_m, dtype=np.float64) / 100.0)
    return np.stack(cols, axis=1)


def describe_conditions(y: np.ndarray) -> list[dict[str, Any]]:
    """The condition columns with their observed ranges (for ``info.protocol``)."""
    out = []
    for j in range(y.shape[1]):
        d = {k: v for k, v in CONDITIONS[j].items() if k != "optional"}
        d["column"] = j
        d["range"] = [float(y[:, j].min()), float(y[:, j].max())] if len(y) else None
        out.append(d)
    return out


class IACTDataset(torch.utils.data.Dataset):
    """Camera images in photoelectrons, held as pixel images, served as cartesian network samples.

    Attributes:
        pe: Pixel images ``(N, n_pixels)`` in photoelectrons (float32): what the physics metrics see.
        x: Network samples ``(N, 1, side, side)`` float32 in about ``[-1, 1]`` (:meth:`CartesianCamera.encode`).
        y: Conditions ``(N, cond_dim)`` float32 (see the module docstring).
        camera: The camera and its cartesian mapping.
        info: The :class:`ganforge.DataInfo`.
    """

    def __init__(self, pe: np.ndarray, y: np.ndarray, camera: CartesianCamera, name: str,
                 protocol: dict[str, Any]) -> None:
        super().__init__()
        self.camera = camera
        self.pe = np.asarray(pe, dtype=np.float32)
        self.x = torch.from_numpy(camera.encode(self.pe))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.float32))
        clipped = int(np.count_nonzero(np.abs(self.pe) > camera.amplitude.max_pe))
        self.info = DataInfo(
            sample_shape=tuple(self.x.shape[1:]),
            cond_dim=int(self.y.shape[1]),
            kind="image",
            value_range=(-1.0, 1.0),
            name=name,
            protocol={**protocol, **camera.protocol(), "conditions": describe_conditions(np.asarray(y)),
                      "num_samples": int(len(self.pe)), "clipped_pixels": clipped},
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> Any:
        return self.x[index], self.y[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples at once (the engine's in-memory fast path)."""
        return self.x, self.y
