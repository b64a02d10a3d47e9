"""The toy camera, its cartesian mapping, the toy simulator and Hillas recovery (ganforge-astro)."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from ctapipe.image.toymodel import Gaussian

from ganforge_astro.camera import Amplitude, CartesianCamera, deg_to_m, toy_camera, toy_camera_spec
from ganforge_astro.physics import PARAMETERS, Cleaning, image_parameters
from ganforge_astro.toy import iact_toy, power_law

F = 4.75  # the toy camera's focal length (m)


@pytest.fixture(scope="module")
def camera() -> CartesianCamera:
    spec = toy_camera_spec()
    return CartesianCamera(toy_camera(), spec["focal_length_m"], Amplitude(), spec)


@pytest.fixture(scope="module")
def small() -> object:
    return iact_toy(num_samples=60, seed=3)


def test_camera_is_taiga_like_hexagonal(camera):
    g = camera.geometry
    assert g.n_pixels == 559
    assert g.pix_type.value == "hexagon"
    assert len(g.neighbors[0]) == 6  # pixel 0 is the centre; an inner hexagonal pixel has 6 neighbours
    pitch_deg = math.degrees(math.atan(g.pixel_width[0].to_value(u.m) / F))
    assert pitch_deg == pytest.approx(0.36, rel=1e-6)
    radius_deg = math.degrees(math.atan(np.hypot(g.pix_x, g.pix_y).max().to_value(u.m) / F))
    assert 4.3 < radius_deg < 4.5  # ~8.9° across pixel centres (TAIGA-IACT: ~9.6° with the pixels' extent)
    assert camera.grid_shape == (29, 29) and camera.side == 32


def test_cartesian_round_trip_is_exact(camera):
    rng = np.random.default_rng(0)
    pix = rng.normal(size=(5, camera.n_pixels)) * 1000
    grid = camera.to_grid(pix)
    assert grid.shape == (5, 32, 32)
    assert np.array_equal(camera.to_pixels(grid), pix)  # exact, not approximate
    assert np.count_nonzero(grid[0]) == camera.n_pixels  # every pixel has its own cell, the rest are 0
    # photoelectrons -> network samples -> photoelectrons: the asinh map inverts to float rounding
    pe = np.abs(pix)
    x = camera.encode(pe)
    assert x.shape == (5, 1, 32, 32) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    np.testing.assert_allclose(camera.amplitude.inverse(camera.amplitude.forward(pe)), pe, rtol=1e-12)
    np.testing.assert_allclose(camera.decode(x), pe, rtol=2e-5, atol=1e-5)  # through float32


def test_offset_amplitude_puts_empty_pixels_at_minus_one(small):
    """Cleaned toy images: 0 pe and cells outside the camera are -1 (where tanh saturates), exact way back."""
    cam = small.camera
    assert cam.amplitude.offset and small.info.protocol["amplitude"]["offset"] is True
    x = small.x.numpy()
    outside = np.ones((32, 32), bool)
    outside[cam.to_grid(np.ones((1, cam.n_pixels)))[0] != 0] = False
    assert (x[:, 0][:, outside] == -1).all() and x.min() == -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(cam.amplitude.inverse(cam.amplitude.forward(small.pe.astype(float))), small.pe,
                               rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="offset=True needs non-negative photoelectrons"):
        cam.amplitude.forward(np.array([[-3.0]]))
    assert not iact_toy(num_samples=5, seed=0, cleaning=False).camera.amplitude.offset  # pedestal noise < 0


def test_cartesian_rejects_wrong_sizes(camera):
    with pytest.raises(ValueError, match="559 pixels, got images with 558"):
        camera.to_grid(np.zeros((1, 558)))
    with pytest.raises(ValueError, match="expected cartesian images of 32 × 32"):
        camera.to_pixels(np.zeros((1, 1, 16, 16)))


# Documented tolerances (README "Hillas recovery"): for an ellipse the camera resolves (width >= 0.15°,
# i.e. >= 0.4 pixel pitch) with 10^4 photoelectrons, Poisson noise and no NSB, Hillas length and width
# are recovered within 2 %, the orientation within 1° and the centroid within 0.02°.
ELLIPSES = [  # length°, width°, psi°, x°, y°
    (0.5, 0.2, 30.0, 0.5, -0.3),
    (0.8, 0.3, -60.0, -1.0, 0.5),
    (0.4, 0.15, 80.0, 0.2, 0.2),
    (0.6, 0.25, 0.0, 1.5, 0.0),
]


@pytest.mark.parametrize("length,width,psi,x,y", ELLIPSES)
def test_hillas_recovers_known_ellipses(camera, length, width, psi, x, y):
    model = Gaussian(x=deg_to_m(x, F) * u.m, y=deg_to_m(y, F) * u.m, length=deg_to_m(length, F) * u.m,
                     width=deg_to_m(width, F) * u.m, psi=psi * u.deg)
    rng = np.random.default_rng(1)
    img = model.generate_image(camera.geometry, intensity=1e4, nsb_level_pe=0, rng=rng)[0]
    row = image_parameters(camera.geometry, img[None], Cleaning(picture_pe=0.5, boundary_pe=0.5,
                                                                min_picture_neighbors=0), F)[0]
    p = dict(zip(PARAMETERS, row))
    assert p["length"] == pytest.approx(length, rel=0.02)
    assert p["width"] == pytest.approx(width, rel=0.02)
    assert p["r"] == pytest.approx(math.hypot(x, y), abs=0.02)
    assert p["log10_size"] == pytest.approx(4.0, abs=0.01)
    # alpha: angle between the major axis and the direction to the camera centre, in [0°, 90°]
    expected_alpha = abs(math.degrees(math.atan(math.tan(math.radians(psi) - math.atan2(y, x)))))
    assert p["alpha"] == pytest.approx(expected_alpha, abs=1.0)


def test_hillas_limit_below_the_pixel_size_is_documented(camera):
    """Narrower than 0.4 pitch, pixelization dominates: width 0.1° comes out >10 % off (why the limit exists)."""
    model = Gaussian(x=0 * u.m, y=0 * u.m, length=deg_to_m(0.3, F) * u.m, width=deg_to_m(0.1, F) * u.m,
                     psi=45 * u.deg)
    img = model.expected_signal(camera.geometry, 1e4)
    row = image_parameters(camera.geometry, img[None], Cleaning(0.5, 0.5, 0), F)[0]
    assert abs(row[PARAMETERS.index("width")] / 0.1 - 1) > 0.1


def test_toy_is_seeded_and_deterministic(small):
    again = iact_toy(num_samples=60, seed=3)
    other = iact_toy(num_samples=60, seed=4)
    assert np.array_equal(small.pe, again.pe) and np.array_equal(small.y.numpy(), again.y.numpy())
    assert not np.array_equal(small.pe, other.pe)
    assert small.info.protocol == again.info.protocol


def test_toy_dataset_info_describes_conditions(small):
    info = small.info
    # the particle type is the class (column 0 of y), log10 E the one continuous condition (column 1)
    assert info.sample_shape == (1, 32, 32) and info.kind == "image"
    assert (info.num_classes, info.cond_dim) == (2, 1)
    conds = info.protocol["conditions"]
    assert [(c["name"], c["column"], c["kind"]) for c in conds] == [("particle", 0, "class"),
                                                                    ("log10_energy", 1, "continuous")]
    assert conds[0]["values"] == {"0": "gamma", "1": "proton"}
    labels, energy = info.split_conditions(small.y)  # ganforge's layout: checks the class column too
    assert conds[1]["range"] == pytest.approx([float(energy.min()), float(energy.max())], rel=1e-6)  # float64 vs 32
    assert set(labels.tolist()) <= {0, 1}
    assert info.protocol["camera"]["model"] == "toy-hex"
    x, y = small[0]
    assert x.shape == (1, 32, 32) and y.shape == (2,)
    assert set(np.unique(small.y[:, 0].numpy())) <= {0.0, 1.0}
    assert (small.pe >= 0).all()  # cleaned: pixels outside the tail-cuts mask are 0, survivors above 3 pe
    with_impact = iact_toy(num_samples=5, seed=0, impact_condition=True).info
    assert (with_impact.num_classes, with_impact.cond_dim) == (2, 2)
    assert [c["column"] for c in with_impact.protocol["conditions"]] == [0, 1, 2]
    assert with_impact.protocol["conditions"][2]["name"] == "impact_100m"


def test_toy_physics_gammas_point_at_the_source_protons_do_not():
    ds = iact_toy(num_samples=300, seed=5)
    rows = image_parameters(ds.camera.geometry, ds.pe, Cleaning(), F)
    ok = np.isfinite(rows).all(1)
    alpha = rows[:, PARAMETERS.index("alpha")]
    gamma = ok & (ds.y[:, 0].numpy() == 0)
    proton = ok & (ds.y[:, 0].numpy() == 1)
    assert gamma.sum() > 50 and proton.sum() > 30
    assert np.median(alpha[gamma]) < 15 < 30 < np.median(alpha[proton])
    # size grows with energy: positive correlation of log10 size and log10 E for gammas
    c = np.corrcoef(rows[gamma, 0], ds.y[gamma, 1].numpy())[0, 1]
    assert c > 0.5


def test_power_law_index_is_recovered():
    e = power_law(np.random.default_rng(0), 200_000, 2.0, 1.0, 100.0)
    assert e.min() >= 1.0 and e.max() <= 100.0
    # truncated power law with index 2: P(E > 10 TeV) = (1/10 - 1/100) / (1 - 1/100)
    assert np.mean(e > 10.0) == pytest.approx((0.1 - 0.01) / 0.99, abs=0.003)


@pytest.mark.parametrize("params,message", [
    ({"num_samples": 0}, "num_samples=0; expected a positive integer"),
    ({"gamma_fraction": 1.5}, "gamma_fraction=1.5; expected a fraction in [0, 1]"),
    ({"energy_min_tev": 10.0, "energy_max_tev": 1.0}, "energy_min_tev/energy_max_tev=(10.0, 1.0)"),
])
def test_toy_bad_parameters_name_the_key(params, message):
    with pytest.raises(ValueError, match=re_escape(message)):
        iact_toy(**{"num_samples": 5, **params})


def re_escape(s: str) -> str:
    import re

    return re.escape(s)
