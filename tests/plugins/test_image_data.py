"""digits, stacked-digits and image-folder: shapes, ranges, classes, the fixed split, every error."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.contract.components import DataInfo, GANDataset
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.data.digits import digits, digits_split_indices, digits_tensors, stacked_digits
from ganforge_plugins.data.image_folder import image_folder

# -- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_range_and_classes():
    ds = digits()
    assert isinstance(ds, GANDataset) and isinstance(ds.info, DataInfo)
    assert len(ds) == 1797
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.long and y.ndim == 0
    info = ds.info
    assert info.sample_shape == (1, 8, 8) and info.num_classes == 10 and info.kind == "image"
    assert info.value_range == (-1.0, 1.0) and info.name == "digits"
    xs, ys = digits_tensors("all", 8)
    assert xs.min() == -1.0 and xs.max() == 1.0
    assert torch.unique(xs).numel() == 17  # the 17 grey levels 0..16, mapped exactly
    assert torch.bincount(ys).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = digits_split_indices("train"), digits_split_indices("test")
    assert len(train) == 1438 and len(test) == 359
    assert not set(train) & set(test) and sorted(set(train) | set(test)) == list(range(1797))
    _, y = digits_tensors("all", 8)
    per_class_test = torch.bincount(y[torch.from_numpy(test)], minlength=10).float()
    per_class = torch.bincount(y, minlength=10).float()
    assert torch.all((per_class_test / per_class - 0.2).abs() < 0.01)
    assert len(digits(split="train")) == 1438 and len(digits(split="test")) == 359


def test_digits_split_pinned():
    # A moved split would silently invalidate cached statistics and digits-cnn's reported
    # test accuracy (it was trained on the train split).
    test = digits_split_indices("test")
    assert test[:8].tolist() == [3, 7, 13, 19, 36, 38, 43, 48]
    digest = hashlib.sha256(test.astype(np.int64).tobytes()).hexdigest()
    assert digest == digits(split="test").info.protocol["split_sha256"] == TEST_SPLIT_SHA256


TEST_SPLIT_SHA256 = "3530be80b9605f4c4adc46d0ee3006a356c16968a8efcc58f24463bc820d5ef9"


@pytest.mark.parametrize("resolution", [16, 32])
def test_digits_upscale_nearest_is_exactly_invertible(resolution):
    x8, y8 = digits_tensors("all", 8)
    ds = digits(resolution=resolution)
    assert ds.info.sample_shape == (1, resolution, resolution)
    xr = torch.stack([ds[i][0] for i in range(0, 1797, 97)])
    assert xr.shape[-1] == resolution
    assert torch.equal(F.interpolate(xr, size=(8, 8), mode="area"), x8[::97])
    assert ds.info.protocol["upscale"].startswith("nearest")


def test_digits_unlabelled_items_are_tensors():
    ds = digits(labels=False)
    assert ds.info.num_classes == 0 and not ds.info.conditional
    assert isinstance(ds[5], torch.Tensor) and ds[5].shape == (1, 8, 8)


@pytest.mark.parametrize("bad", [12, 4, 0, 512])
def test_digits_bad_resolution_error(bad):
    with pytest.raises(ValueError) as e:
        digits(resolution=bad)
    msg = str(e.value)
    assert f"resolution={bad}" in msg and "multiple of 8" in msg and "8, 16, 32 or 64" in msg


def test_digits_bad_split_error():
    with pytest.raises(ValueError, match=r"split='val' is not one of 'all', 'train', 'test'"):
        digits_split_indices("val")


# -- stacked digits -------------------------------------------------------------------------------


def test_stacked_digits_labels_are_the_three_channel_digits():
    ds = stacked_digits(num_samples=2000, labels=True, seed=1)
    assert ds.info.sample_shape == (3, 8, 8) and ds.info.num_classes == 1000
    x8, y8 = digits_tensors("all", 8)
    for i in (0, 7, 1999):
        x, y = ds[i]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
        t = ds.table[i]
        assert torch.equal(x, x8[t].reshape(3, 8, 8))
        assert int(y) == 100 * int(y8[t[0]]) + 10 * int(y8[t[1]]) + int(y8[t[2]])


def test_stacked_digits_default_has_all_1000_modes_and_is_unconditional():
    ds = stacked_digits()
    assert len(ds) == 25_600 and ds.info.num_classes == 0 and isinstance(ds[0], torch.Tensor)
    assert torch.unique(ds.modes).numel() == 1000
    assert ds.info.protocol["num_modes"] == 1000 and "100*d0" in ds.info.protocol["mode_rule"]


def test_stacked_digits_seed_and_resolution():
    a, b, c = stacked_digits(100, seed=3), stacked_digits(100, seed=3), stacked_digits(100, seed=4)
    assert torch.equal(a.table, b.table) and not torch.equal(a.table, c.table)
    assert a.info.protocol["table_sha256"] != c.info.protocol["table_sha256"]
    big = stacked_digits(10, resolution=32)
    assert big[0].shape == (3, 32, 32) and big.info.sample_shape == (3, 32, 32)


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_stacked_digits_bad_num_samples_error(bad):
    with pytest.raises(ValueError, match=rf"stacked-digits: num_samples={bad!r} must be a positive integer"):
        stacked_digits(num_samples=bad)


def test_stacked_digits_bad_resolution_error():
    with pytest.raises(ValueError, match=r"stacked-digits: resolution=10 is not a multiple of 8"):
        stacked_digits(resolution=10)


# -- image-folder ---------------------------------------------------------------------------------


def _png(path, size=(6, 4), color=(10, 200, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_image_folder_unlabelled_rgb(tmp_path):
    _png(tmp_path / "a.png", color=(0, 255, 51))
    _png(tmp_path / "sub" / "b.PNG", color=(255, 0, 0))
    Image.new("RGB", (6, 4), (128, 128, 128)).save(tmp_path / "c.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("ignored")
    ds = image_folder(str(tmp_path))
    assert len(ds) == 3 and ds.info.sample_shape == (3, 4, 6) and ds.info.num_classes == 0
    x = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    assert ds.info.protocol["bit_depth"] == 8 and len(ds.info.protocol["files_sha256"]) == 64


def test_image_folder_labels_from_sorted_subfolders(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 1), ("cat", 3)):
        for i in range(n):
            _png(tmp_path / cls / f"{i}.png")
    ds = image_folder(str(tmp_path), labels=True)
    assert ds.info.num_classes == 3 and ds.info.protocol["classes"] == ["ant", "cat", "zebra"]
    ys = [int(ds[i][1]) for i in range(len(ds))]
    assert ys == [0, 1, 1, 1, 2, 2]
    assert ds[0][1].dtype == torch.long


def test_image_folder_resize_and_grey(tmp_path):
    _png(tmp_path / "wide.png", size=(40, 20), color=(255, 255, 255))
    _png(tmp_path / "tall.png", size=(10, 30), color=(0, 0, 0))
    ds = image_folder(str(tmp_path), resolution=8, channels=1)
    assert ds.info.sample_shape == (1, 8, 8) and len(ds) == 2
    assert "BICUBIC" in ds.info.protocol["resize"]
    assert torch.all(ds[0] == -1.0) and torch.all(ds[1] == 1.0)  # sorted: tall (black), wide (white)


def test_image_folder_16bit_grey_keeps_precision(tmp_path):
    arr = np.array([[0, 1, 65535, 40000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    ds = image_folder(str(tmp_path), channels=1)
    x = ds[0]
    assert ds.info.protocol["bit_depth"] == 16 and x.shape == (1, 1, 4)
    assert torch.allclose(x[0, 0], torch.tensor(arr[0].astype(np.float64) / 32767.5 - 1, dtype=torch.float32))


def test_image_folder_missing_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        image_folder(str(tmp_path / "nope"))
    assert "image-folder: root" in str(e.value) and "nope" in str(e.value) and "does not exist" in str(e.value)


def test_image_folder_root_is_a_file_error(tmp_path):
    f = _png(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        image_folder(str(f))


def test_image_folder_no_images_error_lists_extensions(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"0")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        image_folder(str(tmp_path))
    msg = str(e.value)
    assert "no images in" in msg and ".png, .jpg, .jpeg" in msg and ".tif" in msg and ".txt" in msg


def test_image_folder_empty_folder_error(tmp_path):
    with pytest.raises(ValueError, match="The folder is empty"):
        image_folder(str(tmp_path))


def test_image_folder_corrupt_image_error_names_file(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError) as e:
        image_folder(str(tmp_path))
    assert "cannot read image" in str(e.value) and "bad.png" in str(e.value) and "Remove or replace" in str(e.value)


def test_image_folder_truncated_image_error_names_file(tmp_path):
    good = _png(tmp_path / "t.png", size=(64, 64))
    img = np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read image '.*t\.png'"):
        image_folder(str(tmp_path))


def test_image_folder_mixed_sizes_error_names_two_files(tmp_path):
    _png(tmp_path / "a.png", size=(6, 4))
    _png(tmp_path / "b.png", size=(6, 4))
    _png(tmp_path / "c.png", size=(5, 5))
    with pytest.raises(ValueError) as e:
        image_folder(str(tmp_path))
    msg = str(e.value)
    assert "'a.png' is 6×4" in msg and "'c.png' is 5×5" in msg and "Set resolution" in msg


def test_image_folder_labels_without_subfolders_error(tmp_path):
    _png(tmp_path / "a.png")
    with pytest.raises(ValueError) as e:
        image_folder(str(tmp_path), labels=True)
    assert "labels=true but" in str(e.value) and "no class sub-folders" in str(e.value) and "labels=false" in str(e.value)


def test_image_folder_labels_with_loose_files_error(tmp_path):
    _png(tmp_path / "cls" / "a.png")
    _png(tmp_path / "loose.png")
    with pytest.raises(ValueError, match=r"1 image\(s\) lie directly in .* outside any class sub-folder \(e.g. 'loose.png'\)"):
        image_folder(str(tmp_path), labels=True)


def test_image_folder_bad_channels_and_resolution_errors(tmp_path):
    _png(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"channels=2; expected 1 \(greyscale\) or 3 \(RGB\)"):
        image_folder(str(tmp_path), channels=2)
    with pytest.raises(ValueError, match=r"resolution=0; expected a positive integer or null"):
        image_folder(str(tmp_path), resolution=0)


# -- discovery ------------------------------------------------------------------------------------


def test_registered_and_built_through_the_registry(tmp_path):
    reg = load_registry(warn=False)
    for name in ("digits", "stacked-digits", "image-folder"):
        comp = reg.get("dataset", name)
        assert comp.plugin == "image-data"
    assert [p.name for p in reg.get("dataset", "digits").parameters()] == ["resolution", "split", "labels"]
    assert reg.get("dataset", "stacked-digits").injected() == ["seed"]
    ds = reg.build("dataset", {"name": "stacked-digits", "num_samples": 50, "resolution": 16}, seed=7)
    assert ds.info.protocol["seed"] == 7 and ds[0].shape == (3, 16, 16)
    with pytest.raises(ConfigError, match=r"dataset\.split: expected 'all' \| 'train' \| 'test'"):
        reg.build("dataset", {"name": "digits", "split": "val"})
    with pytest.raises(ConfigError, match="does not exist"):
        reg.build("dataset", {"name": "image-folder", "root": str(tmp_path / "missing")})


@pytest.mark.timeout(60)
def test_image_folder_symlink_loops_scan_each_image_once(tmp_path, capsys):
    root = tmp_path / "imgs"
    _png(root / "a.png")
    _png(root / "sub" / "b.png")
    _png(root / "sub" / "deeper" / "c.png")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # one loop: was 41 copies of each
    ds = image_folder(str(root))
    assert len(ds) == 3
    assert "skipped" in capsys.readouterr().out
    (root / "sub" / "deeper" / "back").symlink_to(root / "sub", target_is_directory=True)  # two loops: hung
    (root / "twin").symlink_to(root / "sub", target_is_directory=True)  # the same folder under a second name
    ds = image_folder(str(root))
    assert len(ds) == 3
    out = capsys.readouterr().out
    assert "image-folder: skipped" in out and f"{root / 'sub' / 'loop'} -> {root}" in out
    assert f"{root / 'sub' / 'deeper' / 'back'} -> {root / 'sub'}" in out
