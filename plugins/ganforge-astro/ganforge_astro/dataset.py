"""The dataset the networks train on: cartesian camera images with their physical conditions.

Conditions: the particle type is a class (``info.num_classes = 2``) and the energy (with
``impact_condition`` also the impact distance) continuous conditions (``info.cond_dim`` 1 or 2).
``y`` is ganforge's layout for both (:meth:`ganforge.DataInfo.split_conditions`): float32, one row
per image, the class in column 0; every column is described, with its index and observed range, in
``info.protocol["conditions"]``, which is where other code looks a column up by name
(:func:`condition_index`):

====  ==================  ==========================================================================
col   name                meaning
====  ==================  ==========================================================================
0     ``particle``        particle type, the class: 0 gamma, 1 proton
1     ``log10_energy``    log10 of the primary energy in TeV (continuous)
2     ``impact_100m``     optional: impact distance from the telescope in units of 100 m
====  ==================  ==========================================================================
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from ganforge import DataInfo

from ganforge_astro.camera import CartesianCamera

PARTICLES = ("gamma", "proton")

# The columns of y, in order (column 0 the class, as ganforge's layout for classes + conditions wants).
CONDITIONS = (
    {"name": "particle", "kind": "class", "values": {"0": "gamma", "1": "proton"}},
    {"name": "log10_energy", "kind": "continuous", "unit": "log10(E/TeV)"},
    {"name": "impact_100m", "kind": "continuous", "unit": "100 m", "optional": True},
)
# Column of each condition in y: the one place the positions are decided.
COLUMN = {c["name"]: j for j, c in enumerate(CONDITIONS)}
PARTICLE_COL, ENERGY_COL = COLUMN["particle"], COLUMN["log10_energy"]


def condition_columns(log10_energy: np.ndarray, particle: np.ndarray, impact_m: Optional[np.ndarray]) -> np.ndarray:
    """``y`` rows in the order of :data:`CONDITIONS`: particle (0/1), log10 E, [impact / 100 m]."""
    cols = {"particle": np.asarray(particle, dtype=np.float64),
            "log10_energy": np.asarray(log10_energy, dtype=np.float64)}
    if impact_m is not None:
        cols["impact_100m"] = np.asarray(impact_m, dtype=np.float64) / 100.0
    return np.stack([cols[c["name"]] for c in CONDITIONS if c["name"] in cols], axis=1)


def condition_index(conditions: Any, name: str) -> Optional[int]:
    """The column of ``y`` holding condition ``name``, from ``info.protocol["conditions"]`` (``None``
    when the list has no such condition)."""
    for c in conditions or []:
        if isinstance(c, dict) and c.get("name") == name and "column" in c:
            return int(c["column"])
    return None


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
        y: Particle class and conditions ``(N, 1 + cond_dim)`` float32 (see the module docstring).
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
            num_classes=len(PARTICLES),
            cond_dim=int(self.y.shape[1]) - 1,  # column 0 is the particle class
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
