"""iact-file (ganforge-astro): .npz and ctapipe DL1 HDF5 files, and one clear message per bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dl1 import write_dl1
from ganforge_astro.files import iact_file
from ganforge_astro.toy import iact_toy


@pytest.fixture(scope="module")
def toy():
    return iact_toy(num_samples=12, seed=7)


def _columns(toy):
    # y: particle class in column 0, log10 E in column 1
    return {"images": toy.pe.astype(np.float64), "energy": 10 ** toy.y[:, 1].numpy().astype(np.float64),
            "particle": toy.y[:, 0].numpy().astype(np.int64)}


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_pixel_and_cartesian_layouts_give_the_toy_back(tmp_path, toy):
    cols = _columns(toy)
    for layout, images in (("pixels", cols["images"]),
                           ("grid", toy.camera.geometry.image_to_cartesian_representation(cols["images"])),
                           ("padded", toy.camera.to_grid(cols["images"]))):
        ds = iact_file(str(_npz(tmp_path, f"{layout}.npz", **{**cols, "images": images})))
        np.testing.assert_array_equal(ds.pe, toy.pe, err_msg=layout)
        np.testing.assert_allclose(ds.y.numpy(), toy.y.numpy(), rtol=1e-6, err_msg=layout)
        assert ds.info.sample_shape == (1, 32, 32) and (ds.info.num_classes, ds.info.cond_dim) == (2, 1)
        assert ds.info.protocol["format"] == "npz" and len(ds.info.protocol["sha256"]) == 64


def test_npz_with_its_own_geometry_and_names(tmp_path, toy):
    g = toy.camera.geometry
    cols = _columns(toy)
    names = np.where(cols["particle"] == 1, "proton", "gamma")
    path = _npz(tmp_path, **{**cols, "particle": names}, impact=np.full(12, 150.0),
                pix_x=g.pix_x.value, pix_y=g.pix_y.value, focal_length=np.float64(4.75))
    ds = iact_file(str(path), impact_key="impact")
    assert ds.info.protocol["camera"]["model"] == "positions" and ds.camera.n_pixels == 559
    np.testing.assert_array_equal(ds.y[:, 0].numpy(), cols["particle"])
    assert (ds.info.num_classes, ds.info.cond_dim) == (2, 2)
    assert [(c["name"], c["column"]) for c in ds.info.protocol["conditions"]] == [
        ("particle", 0), ("log10_energy", 1), ("impact_100m", 2)]
    np.testing.assert_allclose(ds.y[:, 2].numpy(), 1.5)  # impact in units of 100 m
    np.testing.assert_array_equal(ds.pe, toy.pe)


def _bad(tmp_path, toy, message, **changes):
    arrays = {**_columns(toy), **changes}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        iact_file(str(_npz(tmp_path, **arrays)))
    assert "data.npz" in str(info.value)  # every message names the file
    return str(info.value)


def test_npz_mismatched_lengths(tmp_path, toy):
    _bad(tmp_path, toy, "columns have different lengths: 'images' 12, 'energy' 11, 'particle' 12",
         energy=np.ones(11))


def test_npz_missing_column(tmp_path, toy):
    msg = _bad(tmp_path, toy, "has no column 'energy' (it has ['images', 'particle']); add it or set the "
                              "dataset's energy_key", energy=None)
    assert msg.count("\n") == 0


def test_npz_geometry_mismatch(tmp_path, toy):
    _bad(tmp_path, toy, "'images' has 558 pixels per image but the camera has 559", images=toy.pe[:, :558])
    _bad(tmp_path, toy, "holds cartesian images of 30 × 30, but the camera's cartesian grid is 29 × 29",
         images=np.zeros((12, 30, 30)))


def test_npz_nan_pixels(tmp_path, toy):
    images = toy.pe.astype(np.float64).copy()
    images[3, 17] = np.nan
    images[5, 2] = np.inf
    _bad(tmp_path, toy, "'images' has 2 non-finite pixel value(s) (NaN/inf) in 2 image(s), the first at "
                        "image 3, pixel 17", images=images)


def test_npz_unknown_particle_type(tmp_path, toy):
    names = np.array(["gamma"] * 11 + ["electron"])
    _bad(tmp_path, toy, "'particle' has unknown particle type(s) ['electron']; expected ['gamma', 'proton']",
         particle=names)
    _bad(tmp_path, toy, "'particle' has unknown particle type(s) [7]; expected 0 (gamma), 1 (proton)",
         particle=np.array([0] * 11 + [7]))


def test_npz_is_data_not_code(tmp_path, toy):
    path = tmp_path / "data.npz"
    np.savez(path, **_columns(toy), extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot be read without unpickling"):
        iact_file(str(path))


def test_dl1_round_trip_through_ctapipe_writer_and_reader(tmp_path, toy):
    cols = _columns(toy)
    path = write_dl1(tmp_path / "run.dl1.h5", toy.camera.geometry, toy.pe, cols["energy"],
                     np.where(cols["particle"] == 1, 101, 0))
    ds = iact_file(str(path))
    np.testing.assert_array_equal(ds.pe, toy.pe)
    np.testing.assert_allclose(ds.y.numpy(), toy.y.numpy(), rtol=1e-6)
    assert ds.info.protocol["camera"]["model"] == "positions"
    assert ds.info.protocol["camera"]["focal_length_m"] == pytest.approx(4.75)
    assert ds.camera.grid_shape == toy.camera.grid_shape
    # the metrics rebuild this camera from the pixel positions kept in info.protocol
    from ganforge_astro.metrics import hillas

    m = hillas(ds.info, num_samples=10, num_real=None)
    np.testing.assert_array_equal(m.camera.decode(ds.x), ds.camera.decode(ds.x))


def test_dl1_without_energy_column(tmp_path, toy):
    path = write_dl1(tmp_path / "noshower.h5", toy.camera.geometry, toy.pe, np.ones(12), np.zeros(12),
                     with_shower=False)
    with pytest.raises(ValueError, match=re.escape("noshower.h5: telescope 1 has no column 'true_energy'")):
        iact_file(str(path))


def test_dl1_wrong_telescope(tmp_path, toy):
    path = write_dl1(tmp_path / "run.h5", toy.camera.geometry, toy.pe, np.ones(12), np.zeros(12))
    with pytest.raises(ValueError, match=re.escape("has no telescope tel_id=4; its telescopes are [1]; set tel_id")):
        iact_file(str(path), tel_id=4)


def test_not_a_file_and_bad_extension(tmp_path):
    with pytest.raises(ValueError, match="is not a file; give the path of a .npz or DL1 .h5 file"):
        iact_file(str(tmp_path / "missing.npz"))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported extension '.csv'"):
        iact_file(str(tmp_path / "x.csv"))
