"""`gaussian-ring` and `gaussian-grid`: exact, distinct modes; data reproducible from the seed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ganforge import DataInfo, GANDataset
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.data.mixtures import MixtureDataset, gaussian_grid, gaussian_ring, grid_modes, ring_modes


@pytest.fixture(scope="module")
def registry():
    return load_registry(strict=False, warn=False)


@pytest.mark.parametrize("n", [3, 8, 25])
def test_ring_modes_distinct_and_on_the_circle(n: int) -> None:
    modes = ring_modes(n, 2.5).double()
    assert modes.shape == (n, 2)
    torch.testing.assert_close(modes.norm(dim=1), torch.full((n,), 2.5, dtype=torch.float64), atol=1e-6, rtol=0)
    angles = torch.atan2(modes[:, 1], modes[:, 0]) % (2 * math.pi)
    expected = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    # compare on the circle, so an angle of 2π - ε matches 0
    gap = torch.remainder(angles - expected + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-6
    # neighbours are a chord 2r·sin(π/n) apart: no two modes coincide (the linspace(…, endpoint=True) bug)
    dist = torch.cdist(modes, modes) + torch.eye(n) * 1e9
    assert dist.min() == pytest.approx(2 * 2.5 * math.sin(math.pi / n), rel=1e-5)


def test_buggy_linspace_would_fail_the_distinctness_check() -> None:
    thetas = np.linspace(0, 2 * np.pi, 8)  # the widely copied version
    buggy = np.stack([np.cos(thetas), np.sin(thetas)], 1)
    assert len({tuple(np.round(m, 6)) for m in buggy}) == 7
    assert len({tuple(np.round(m, 6)) for m in ring_modes(8, 1.0).numpy()}) == 8


def test_grid_is_pacgans() -> None:
    modes = grid_modes(5, 2.0)
    expected = {(float(a), float(b)) for a, b in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
    assert {tuple(m) for m in modes.tolist()} == expected
    assert len(modes) == 25
    assert grid_modes(4, 1.0).mean(0).abs().max() < 1e-7  # centred for even sizes too


def test_ring_dataset_info_and_items() -> None:
    ds = gaussian_ring(num_samples=1000, seed=5)
    assert isinstance(ds, GANDataset) and isinstance(ds, MixtureDataset)
    info = ds.info
    assert isinstance(info, DataInfo)
    assert info.sample_shape == (2,) and info.kind == "points" and not info.conditional
    assert info.name == "gaussian-ring" and info.mode_std == 0.01
    assert info.modes is not None and info.modes.shape == (8, 2)
    assert info.value_range == (float(ds.data.min()), float(ds.data.max()))
    assert info.protocol == {
        "dataset": "gaussian-ring",
        "num_modes": 8,
        "radius": 1.0,
        "placement": "angle 2*pi*k/num_modes, k=0..num_modes-1",
        "std": 0.01,
        "num_samples": 1000,
        "seed": 5,
    }
    assert len(ds) == 1000
    x = ds[3]
    assert isinstance(x, torch.Tensor) and x.shape == (2,) and x.dtype == torch.float32
    batch = next(iter(DataLoader(ds, batch_size=16)))
    torch.testing.assert_close(batch, ds.data[:16])
    info.to_dict()  # serializable for summary.json


def test_reproducible_from_seed() -> None:
    a = gaussian_ring(num_samples=500, seed=11)
    b = gaussian_ring(num_samples=500, seed=11)
    c = gaussian_ring(num_samples=500, seed=12)
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, c.data)
    torch.manual_seed(0)
    d = gaussian_ring(num_samples=500, seed=11)
    torch.manual_seed(999)  # the global RNG plays no part
    e = gaussian_ring(num_samples=500, seed=11)
    assert torch.equal(d.data, e.data) and torch.equal(a.data, d.data)


@pytest.mark.parametrize("factory,std,modes", [(gaussian_ring, 0.01, 8), (gaussian_grid, 0.05, 25)])
def test_samples_follow_the_mixture(factory, std: float, modes: int) -> None:
    ds = factory(num_samples=20_000, seed=1)
    resid = (ds.data.double() - ds.info.modes.double()[ds.components]).numpy()
    # per-coordinate std within ~3 standard errors (se ≈ std/sqrt(2n) = 0.5 %)
    assert np.allclose(resid.std(0), std, rtol=0.02)
    assert np.abs(resid.mean(0)).max() < 4 * std / math.sqrt(len(resid))
    share = np.bincount(ds.components.numpy(), minlength=modes) / len(ds)
    assert np.abs(share - 1 / modes).max() < 5 * math.sqrt((1 / modes) / len(ds))
    # every point's nearest mode is the one it came from (modes are ≥ 2 apart / 0.76 apart vs σ ≤ 0.05)
    nearest = torch.cdist(ds.data.double(), ds.info.modes.double()).argmin(1)
    assert torch.equal(nearest, ds.components)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="num_modes must be an integer >= 1, got 0"):
        gaussian_ring(num_modes=0)
    with pytest.raises(ValueError, match="std must be a finite number > 0, got -0.1"):
        gaussian_grid(std=-0.1)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        gaussian_ring(num_samples=0)


def test_discovered_through_entry_point(registry) -> None:
    assert {"gaussian-ring", "gaussian-grid"} <= set(registry.names("dataset"))
    comp = registry.get("dataset", "gaussian-grid")
    assert comp.plugin == "mixtures"
    assert {p.name: p.default for p in comp.parameters()} == {
        "per_side": 5,
        "spacing": 2.0,
        "std": 0.05,
        "num_samples": 100_000,
    }
    ds = registry.build("dataset", {"name": "gaussian-grid", "num_samples": 100}, seed=42)
    assert ds.info.protocol["seed"] == 42 and ds.info.modes.shape == (25, 2)
    with pytest.raises(ConfigError, match="dataset.radius: expected float"):
        registry.build("dataset", {"name": "gaussian-ring", "radius": "big"}, seed=0)
    with pytest.raises(ConfigError, match=r"dataset \(dataset 'gaussian-ring'.*radius must be a finite number > 0"):
        registry.build("dataset", {"name": "gaussian-ring", "radius": 0}, seed=0)
