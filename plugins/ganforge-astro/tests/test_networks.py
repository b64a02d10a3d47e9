"""``iact-rotated``: the turn is a rotation of the camera image about its centre (checked with ctapipe's Hillas
parameters), its angle is uniform and a function of the noise, its reflection exact, and it is built and refused
through the registry. ``iact-canonical``: its verdict does not change under any of the camera's twelve symmetries,
it sees every image in one 30-degree sector, and bad values are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ganforge import ConfigError
from ganforge_astro.camera import camera_from_info
from ganforge_astro.networks import RotatedGenerator, camera_symmetries, iact_canonical, iact_rotated
from ganforge_astro.physics import PARAMETERS, Cleaning, image_parameters
from ganforge_astro.toy import iact_toy


class Fixed(nn.Module):
    """A 'generator' that returns given images (the turn's input), whatever the noise."""

    latent_shape = (4,)

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = nn.Parameter(images.clone())

    def forward(self, z, y=None):  # noqa: ANN001
        return self.images[: len(z)]


@pytest.fixture(scope="module")
def toy():
    return iact_toy(num_samples=300, seed=21)


def _hillas(info, images: torch.Tensor) -> np.ndarray:
    cam = camera_from_info(info, "test")
    return image_parameters(cam.geometry, cam.decode(images.detach()), Cleaning(), 1.0)


def test_hexagonal_turns_permute_the_pixels_exactly(toy):
    """Multiples of 60 degrees are the hexagonal camera's own symmetry: the turn moves every pixel's value
    to another pixel, and the Hillas parameters that do not depend on direction are unchanged."""
    x, y = toy.tensors()
    gammas = x[(y[:, 0] == 0)][:40]
    G = RotatedGenerator(Fixed(gammas), toy.info, angles="hexagonal")
    cam = camera_from_info(toy.info, "test")
    before = _hillas(toy.info, gammas)
    keep = [PARAMETERS.index(p) for p in ("log10_size", "length", "width", "r", "alpha", "skewness", "kurtosis")]
    before = np.abs(before)  # skewness changes sign when the turn flips ctapipe's choice of axis direction
    for k in range(1, 6):
        turned = G.turn(gammas, torch.full((len(gammas),), k * math.pi / 3))
        np.testing.assert_array_equal(np.sort(cam.decode(turned.detach()), 1), np.sort(cam.decode(gammas), 1))
        after = np.abs(_hillas(toy.info, turned))
        np.testing.assert_allclose(after[:, keep], before[:, keep], rtol=1e-4, atol=1e-3)
    idx, inside = G._sources(torch.arange(6) * (math.pi / 3))  # the looked-up table is the computed turn
    assert torch.equal(idx, G.hex_sources) and bool(inside.all())
    assert len(set(G.hex_sources[1].tolist())) == G.hex_sources.shape[1]  # a permutation of the pixels
    z = torch.randn(6000, 4, generator=torch.Generator().manual_seed(1))
    sixths = np.round(G.angle(z).numpy() / (math.pi / 3), 6)
    assert set(np.unique(sixths)) == {0, 1, 2, 3, 4, 5}
    assert np.bincount(sixths.astype(int)).min() > 0.9 * 1000


def test_any_turn_is_a_rotation_about_the_camera_centre(toy):
    x, y = toy.tensors()
    gammas = x[(y[:, 0] == 0)][:40]
    G = RotatedGenerator(Fixed(gammas), toy.info)
    before = _hillas(toy.info, gammas)
    pitch = float(np.degrees(np.arctan(G.pitch / 1.0)))  # in image_parameters' units (focal length 1)
    r, length, size = (PARAMETERS.index(p) for p in ("r", "length", "log10_size"))
    for theta in (0.3, 1.0, 2.0, math.pi):
        after = _hillas(toy.info, G.turn(gammas, torch.full((len(gammas),), theta)))
        ok = np.isfinite(before[:, 0]) & np.isfinite(after[:, 0])
        assert ok.sum() >= 30
        # distance from the centre, length and size stay; nearest-pixel resampling on a hexagonal grid moves
        # light by less than a pitch (and jitters a thin image's orientation: docs/astro.md)
        assert np.median(np.abs(after[ok, r] - before[ok, r])) < 0.2 * pitch
        assert np.median(np.abs(after[ok, length] - before[ok, length])) < 0.2 * pitch
        assert np.median(np.abs(after[ok, size] - before[ok, size])) < 0.02
    cam = camera_from_info(toy.info, "test")
    pe0 = cam.decode(gammas)
    pe1 = cam.decode(G.turn(gammas, torch.full((len(gammas),), math.pi / 2)).detach())
    px, py = cam.geometry.pix_x.value, cam.geometry.pix_y.value
    phi0 = np.arctan2((pe0 * py).sum(1), (pe0 * px).sum(1))
    phi1 = np.arctan2((pe1 * py).sum(1), (pe1 * px).sum(1))
    assert np.median(np.abs(np.angle(np.exp(1j * (phi1 - phi0))) - math.pi / 2)) < 0.05  # the centroid turns by theta
    same = G.turn(gammas, torch.zeros(len(gammas)))  # theta = 0 reads every pixel from itself
    np.testing.assert_array_equal(cam.decode(same.detach()), cam.decode(gammas))


def test_angle_is_uniform_from_the_noise_and_gradients_reach_the_base(toy):
    z = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0))
    x, y = toy.tensors()
    theta = RotatedGenerator(Fixed(x[:8]), toy.info).angle(z).numpy()
    assert theta.min() >= 0 and theta.max() < 2 * math.pi
    counts = np.histogram(theta, bins=8, range=(0, 2 * math.pi))[0]
    assert counts.min() > 0.9 * len(theta) / 8  # uniform within sampling noise (expected 2,500 per bin)
    G = RotatedGenerator(Fixed(x[:8]), toy.info)
    zz = torch.randn(8, 4)
    out = G(zz, y[:8])
    assert torch.equal(out, G(zz, y[:8]))  # a function of the noise
    out.sum().backward()
    assert G.base.images.grad.abs().sum() > 0


def test_built_through_the_registry_and_bad_values_name_the_key(toy):
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    spec = {"name": "iact-rotated", "base": "dcgan",
            "base_params": {"latent_dim": 16, "width": 8, "conditioning": "cbn", "coords": True}}
    G = reg.build("generator", spec, info=toy.info, seed=0)
    x, y = toy.tensors()
    z = torch.randn(4, *G.latent_shape)
    out = G(z, y[:4])
    assert out.shape == x[:4].shape and G.latent_shape == (16,)
    assert set(G.state_dict()) == {f"base.{k}" for k in G.base.state_dict()}  # the turn has no weights
    with pytest.raises(ConfigError, match="generator.base"):
        reg.build("generator", dict(spec, base="dcgam"), info=toy.info, seed=0)
    with pytest.raises(ConfigError, match="width"):
        reg.build("generator", dict(spec, base_params={"width": -3}), info=toy.info, seed=0)
    with pytest.raises(ValueError, match="cannot turn itself"):
        iact_rotated(toy.info, base="iact-rotated")
    from ganforge import DataInfo

    with pytest.raises(ValueError, match="generator 'iact-rotated'"):
        iact_rotated(DataInfo(sample_shape=(2,), kind="points", name="ring8"))
    with pytest.raises(ValueError, match="angles='square'; expected one of"):
        iact_rotated(toy.info, base_params={"latent_dim": 8, "width": 8}, angles="square")


def test_fit_with_iact_rotated_resumes_bit_for_bit(tmp_path):
    """The turn's angle and reflection come from the noise, the canonical sector from the image, and neither has
    state of its own: 6 + 6 steps with a resume give the weights of 12 straight steps, with the shipped config's
    networks (iact-rotated with angles: hexagonal and mirror, iact-canonical with mirror)."""
    from pathlib import Path

    from ganforge.registry.registry import get_registry
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    config = Path(__file__).resolve().parents[1] / "configs" / "iact-cgan.yaml"
    reg = get_registry()
    base = ["dataset.num_samples=120", "train.batch_size=16", "generator.base_params.width=8",
            "discriminator.base_params.width=8", "metrics.list=[]", "logger=[]", "train.checkpoint_every_n_steps=6"]

    def run(root, steps, resume=None):
        cfg = load_config(str(config), base + [f"root_dir={root}", f"train.max_steps={steps}"], reg)
        return fit(cfg, resume=resume, progress=False, registry=reg)

    straight = run(tmp_path / "a", 12)["module"]
    first = run(tmp_path / "b", 6)
    assert first["module"].g_steps == 6
    resumed = run(tmp_path / "b", 12, resume="auto")["module"]
    assert resumed.g_steps == 12
    (run_dir,) = (tmp_path / "b").glob("iact-cgan/version_*")  # the same run, continued
    assert len((run_dir / "segments.jsonl").read_text().splitlines()) == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("generator.base.") for k in a)
    assert any(k.startswith("discriminator.base.") for k in a)  # the config's iact-canonical
    assert all(torch.equal(a[k], b[k]) for k in a)


def _symmetric_copy(decoder, images: torch.Tensor, k: int, reflect: bool, turns, flip) -> torch.Tensor:
    """``images`` turned by ``k``·60° after a reflection (``y → −y``) when ``reflect``, by the pixel look-ups."""
    values = decoder.units(images)
    idx = flip[turns[k]] if reflect else turns[k]
    background = decoder.camera.amplitude.background
    out = torch.full((len(images), decoder.side * decoder.side), background)
    out = out.index_copy(1, decoder.cells, values[:, idx])
    return out.reshape(images.shape)


def test_mirror_reflects_exactly_and_half_the_time(toy):
    """``mirror``: a reflection y -> -y of the camera image (a permutation; the direction-free Hillas parameters
    are unchanged and the centroid's y changes sign), chosen by the second noise coordinate, half the time."""
    x, y = toy.tensors()
    gammas = x[(y[:, 0] == 0)][:40]
    G = RotatedGenerator(Fixed(gammas), toy.info, angles="hexagonal", mirror=True)
    no = torch.zeros(len(gammas), dtype=torch.bool)
    assert torch.equal(G.turn(gammas, torch.zeros(len(gammas)), no), gammas)
    mirrored = G.turn(gammas, torch.zeros(len(gammas)), ~no)
    assert torch.equal(G.decoder.units(mirrored), G.decoder.units(gammas)[:, G.flip])
    assert sorted(G.flip.tolist()) == list(range(G.decoder.camera.n_pixels))
    before, after = _hillas(toy.info, gammas), _hillas(toy.info, mirrored)
    keep = [PARAMETERS.index(p) for p in ("log10_size", "length", "width", "r", "alpha", "kurtosis")]
    np.testing.assert_allclose(after[:, keep], before[:, keep], rtol=1e-4, atol=1e-3)
    cam = camera_from_info(toy.info, "test")
    pos = G.decoder.positions.double().numpy()
    light = lambda im: np.clip(cam.decode(im.detach()), 0, None)  # noqa: E731  (photoelectrons)
    cy = lambda im: (light(im) @ pos[:, 1]) / light(im).sum(1)  # noqa: E731
    np.testing.assert_allclose(cy(mirrored), -cy(gammas), atol=1e-9)
    # reflected and turned: the same as the look-ups composed by hand
    k = torch.full((len(gammas),), 2 * math.pi / 3)
    turns, flip = camera_symmetries(G.decoder, "test")
    assert torch.equal(G.turn(gammas, k, ~no), _symmetric_copy(G.decoder, gammas, 2, True, turns, flip))
    z = torch.randn(4000, 4, generator=torch.Generator().manual_seed(0))
    assert abs(float(G.reflected(z).float().mean()) - 0.5) < 0.03
    assert torch.equal(G.reflected(z), z[:, 1] > 0)
    with pytest.raises(ValueError, match="mirror='yes'; expected true or false"):
        RotatedGenerator(Fixed(gammas), toy.info, angles="hexagonal", mirror="yes")


def test_canonical_discriminator_is_invariant_under_the_camera_symmetries(toy):
    """Real images turned by any multiple of 60 degrees, reflected or not, get the same verdict (the base
    discriminator alone does not: the invariance is the canonical turn's); every image reaches the base turned
    into the sector [0, 30] degrees; gradients reach every lit pixel."""
    from ganforge.registry.registry import get_registry

    spec = {"name": "iact-canonical", "base": "dcgan", "mirror": True,
            "base_params": {"width": 8, "conditioning": "projection", "spectral_norm": True}}
    D = get_registry().build("discriminator", spec, info=toy.info, seed=0)
    D.eval()
    x, y = toy.tensors()
    x, y = x[:48], y[:48]
    turns, flip = camera_symmetries(D.decoder, "test")
    with torch.no_grad():
        verdict, raw = D(x, y), D.base(x, y)
        moved = 0.0
        for k in range(6):
            for reflect in (False, True):
                copy = _symmetric_copy(D.decoder, x, k, reflect, turns, flip)
                assert torch.equal(D(copy, y), verdict), (k, reflect)
                moved = max(moved, float((D.base(copy, y) - raw).abs().max()))
        assert moved > 1e-3  # the base alone would tell the copies apart
        turns_only = get_registry().build("discriminator", dict(spec, mirror=False), info=toy.info, seed=0).eval()
        turns_only.load_state_dict(D.state_dict())
        own = turns_only(x, y)  # mirror: false sees the turns only, not the reflection
        assert torch.equal(turns_only(_symmetric_copy(D.decoder, x, 4, False, turns, flip), y), own)
        assert float((turns_only(_symmetric_copy(D.decoder, x, 0, True, turns, flip), y) - own).abs().max()) > 1e-3
        canon = (D.decoder.units(D.canonical(x)) - D.background).clamp(min=0).double()
        pos = D.decoder.positions.double()
        phi = torch.rad2deg(torch.atan2(canon @ pos[:, 1], canon @ pos[:, 0]))
        assert float(phi.min()) >= -1e-6 and float(phi.max()) <= 30 + 1e-6
    assert set(D.state_dict()) == {f"base.{k}" for k in D.base.state_dict()}  # the turn has no weights
    xg = x.clone().requires_grad_(True)
    D(xg, y).sum().backward()
    lit = D.decoder.units(x) > D.background + 0.05
    grad = D.decoder.units(xg.grad).abs()
    assert bool((grad[lit] > 0).float().mean() > 0.9)


def test_canonical_discriminator_bad_values_name_the_key(toy):
    from types import SimpleNamespace

    from ganforge import DataInfo
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    spec = {"name": "iact-canonical", "base": "dcgan", "base_params": {"width": 8, "conditioning": "projection"}}
    with pytest.raises(ConfigError, match="discriminator.base"):
        reg.build("discriminator", dict(spec, base="dcgam"), info=toy.info, seed=0)
    with pytest.raises(ConfigError, match="width"):
        reg.build("discriminator", dict(spec, base_params={"width": -3}), info=toy.info, seed=0)
    with pytest.raises(ConfigError, match="mirror"):
        reg.build("discriminator", dict(spec, mirror="yes"), info=toy.info, seed=0)
    with pytest.raises(ValueError, match="cannot wrap itself"):
        iact_canonical(toy.info, base="iact-canonical")
    with pytest.raises(ValueError, match="discriminator 'iact-canonical'"):
        iact_canonical(DataInfo(sample_shape=(2,), kind="points", name="ring8"))
    D = reg.build("discriminator", spec, info=toy.info, seed=0)
    off = SimpleNamespace(camera=D.decoder.camera, positions=D.decoder.positions + torch.tensor([0.01, 0.0]))
    with pytest.raises(ValueError, match="is not symmetric under a turn by 60 degrees about its centre"):
        camera_symmetries(off, "discriminator 'iact-canonical'")
