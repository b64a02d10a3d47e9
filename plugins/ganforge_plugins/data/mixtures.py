"""Synthetic Gaussian mixtures with known modes: ``gaussian-ring`` and ``gaussian-grid``.

The defaults are PacGAN's protocol (``research/anchors.md`` §1.1): 8 modes on a circle of
radius 1 with σ = 0.01, and a 5×5 grid with centres {-4, -2, 0, 2, 4}² and σ = 0.05, each
with a fixed training set of 100,000 points.

Ring modes sit at angles 2πk/n, k = 0..n-1. Several widely copied scripts use
``np.linspace(0, 2π, n)``, which puts the first and last mode on top of each other and leaves
only n-1 distinct modes; a mode-coverage score computed on such a ring can never reach n.

The training set is drawn once, from the run's seed (injected by the engine), so two runs with
the same seed train on the same points and a run resumed from a checkpoint sees the same data.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset

from ganforge import DataInfo, Register, hookimpl


class MixtureDataset(Dataset):
    """A fixed sample of an equal-weight isotropic Gaussian mixture.

    Each point picks a component uniformly at random, then adds ``std`` times standard
    normal noise to its centre. Drawing happens in float64 (so the noise is not rounded
    before it is scaled) and the stored points are float32.

    Attributes:
        data: The samples, float32 tensor of shape ``(num_samples, dim)``.
        components: The component each sample was drawn from, long tensor ``(num_samples,)``;
            for tests and plots, not returned by ``__getitem__`` (the data is unconditional).
        info: The dataset's :class:`ganforge.DataInfo`, with the true ``modes``
            and ``mode_std`` that mode-coverage metrics need.
    """

    def __init__(
        self,
        modes: torch.Tensor,
        std: float,
        num_samples: int,
        seed: int,
        name: str = "mixture",
        protocol: Optional[dict[str, Any]] = None,
    ) -> None:
        """Draw the training set.

        Args:
            modes: Mode centres, shape ``(num_modes, dim)``.
            std: Standard deviation of every component (the same in each coordinate).
            num_samples: Number of training points.
            seed: Seed of the private random generator that draws the points.
            name: Registered name of the dataset, stored in ``info``.
            protocol: Parameters that define the data; ``num_samples``, ``seed`` and ``std``
                are added.
        """
        super().__init__()
        if modes.ndim != 2 or modes.shape[0] < 1 or modes.shape[1] < 1:
            raise ValueError(f"modes must have shape (num_modes, dim) with both >= 1, got {tuple(modes.shape)}.")
        _check_int(num_samples, "num_samples", 1)
        _check_float(std, "std")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, got {seed!r}.")

        # A private generator: the data depends on the seed alone, not on what else
        # consumed the global RNG before the dataset was built.
        gen = torch.Generator().manual_seed(seed)
        modes64 = modes.to(torch.float64)
        num_modes, dim = modes64.shape
        self.components = torch.randint(num_modes, (num_samples,), generator=gen)
        noise = torch.randn(num_samples, dim, generator=gen, dtype=torch.float64)
        self.data = (modes64[self.components] + std * noise).to(torch.float32)

        proto = dict(protocol or {})
        proto.update({"std": float(std), "num_samples": int(num_samples), "seed": int(seed)})
        self.info = DataInfo(
            sample_shape=(dim,),
            kind="points",
            value_range=(float(self.data.min()), float(self.data.max())),
            modes=modes64.to(torch.float32),
            mode_std=float(std),
            name=name,
            protocol=proto,
        )

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        # The DataLoader calls this with a whole batch of indices: one gather instead of a
        # Python-level loop over rows.
        return list(self.data[torch.as_tensor(indices, dtype=torch.long)].unbind(0))

    def tensors(self) -> tuple[torch.Tensor, None]:
        """All samples at once (``ganforge.loop.data.InMemoryDataset``: ``train.data_on_device``)."""
        return self.data, None


def _check_int(value: Any, param: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}, got {value!r}.")


def _check_float(value: Any, param: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{param} must be a finite number > 0, got {value!r}.")


def ring_modes(num_modes: int, radius: float) -> torch.Tensor:
    """Centres ``radius·(cos 2πk/n, sin 2πk/n)``, k = 0..n-1 (no duplicate at 2π), float32 ``(n, 2)``."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2.0 * math.pi / num_modes)
    return (radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)).to(torch.float32)


def grid_modes(per_side: int, spacing: float) -> torch.Tensor:
    """Centres of a ``per_side × per_side`` grid centred on the origin, row-major, float32 ``(per_side², 2)``."""
    coords = (torch.arange(per_side, dtype=torch.float64) - (per_side - 1) / 2.0) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(torch.float32)


def gaussian_ring(
    num_modes: int = 8,
    radius: float = 1.0,
    std: float = 0.01,
    num_samples: int = 100_000,
    seed: int = 0,
) -> MixtureDataset:
    """Gaussians at equal angles on a circle (PacGAN's ring: 8 modes, radius 1, σ 0.01).

    Args:
        num_modes: Number of components, placed at angles 2πk/num_modes.
        radius: Radius of the circle.
        std: Standard deviation of each component.
        num_samples: Size of the fixed training set.
        seed: Seed the training set is drawn from (injected by the engine: the run's seed).
    """
    _check_int(num_modes, "num_modes", 1)
    _check_float(radius, "radius")
    _check_float(std, "std")
    protocol = {
        "dataset": "gaussian-ring",
        "num_modes": num_modes,
        "radius": float(radius),
        "placement": "angle 2*pi*k/num_modes, k=0..num_modes-1",
    }
    return MixtureDataset(ring_modes(num_modes, radius), std, num_samples, seed, "gaussian-ring", protocol)


def gaussian_grid(
    per_side: int = 5,
    spacing: float = 2.0,
    std: float = 0.05,
    num_samples: int = 100_000,
    seed: int = 0,
) -> MixtureDataset:
    """Gaussians on a square grid centred on the origin (PacGAN's grid: {-4,-2,0,2,4}², σ 0.05).

    Args:
        per_side: Modes along each axis (``per_side²`` in all).
        spacing: Distance between neighbouring centres.
        std: Standard deviation of each component.
        num_samples: Size of the fixed training set.
        seed: Seed the training set is drawn from (injected by the engine: the run's seed).
    """
    _check_int(per_side, "per_side", 1)
    _check_float(spacing, "spacing")
    _check_float(std, "std")
    protocol = {
        "dataset": "gaussian-grid",
        "per_side": per_side,
        "num_modes": per_side * per_side,
        "spacing": float(spacing),
    }
    return MixtureDataset(grid_modes(per_side, spacing), std, num_samples, seed, "gaussian-grid", protocol)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_datasets(register: Register) -> None:
    register("gaussian-ring", gaussian_ring, description="Gaussians on a circle (PacGAN ring: 8 modes, r=1, σ=0.01).")
    register("gaussian-grid", gaussian_grid, description="Gaussians on a square grid (PacGAN grid: 5×5, spacing 2, σ=0.05).")
