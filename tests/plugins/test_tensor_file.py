"""`tensor-file`: the user's arrays from .npy/.npz/.pt, and every error a user can hit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge import GANDataset
from ganforge.io import sha256_file
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.data.tensor_file import TensorFileDataset, tensor_file


@pytest.fixture(scope="module")
def registry():
    return load_registry(strict=False, warn=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_npy_points(tmp_path: Path, rng) -> None:
    x = rng.normal(size=(50, 3)).astype(np.float64)
    np.save(tmp_path / "pts.npy", x)
    ds = tensor_file(str(tmp_path / "pts.npy"))
    assert isinstance(ds, GANDataset) and isinstance(ds, TensorFileDataset)
    assert len(ds) == 50 and ds[0].dtype == torch.float32 and ds[0].shape == (3,)
    torch.testing.assert_close(ds.data, torch.from_numpy(x).float())
    info = ds.info
    assert info.kind == "points" and info.sample_shape == (3,) and not info.conditional
    assert info.value_range == (float(ds.data.min()), float(ds.data.max()))
    assert info.modes is None
    assert info.protocol == {
        "dataset": "tensor-file",
        "file": "pts.npy",
        "sha256": sha256_file(tmp_path / "pts.npy"),
        "samples_key": None,
        "labels_key": None,
        "conditions_key": None,
        "normalize": "none",
        "channels_last": False,
        "num_samples": 50,
        "sample_shape": [3],
    }


def test_big_endian_and_bool_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "be.npz", x=np.arange(6, dtype=">f8").reshape(3, 2), y=np.array([0, 1, 1], dtype=">i4"))
    ds = tensor_file(str(tmp_path / "be.npz"), labels_key="y")
    assert ds.data[2].tolist() == [4.0, 5.0] and ds.info.num_classes == 2
    np.save(tmp_path / "b.npy", np.array([[True, False]]))
    assert tensor_file(str(tmp_path / "b.npy"))[0].tolist() == [1.0, 0.0]


def test_scalar_samples_become_points(tmp_path: Path) -> None:
    torch.save(torch.arange(6.0), tmp_path / "s.pt")
    ds = tensor_file(str(tmp_path / "s.pt"))
    assert ds.info.sample_shape == (1,) and ds[2].tolist() == [2.0]


def test_npz_images_with_labels(tmp_path: Path, rng) -> None:
    x = rng.integers(0, 256, size=(20, 5, 6), dtype=np.uint8)  # (N, H, W): a channel is added
    y = np.arange(20) % 4
    np.savez(tmp_path / "img.npz", images=x, cls=y.astype(np.int32))
    ds = tensor_file(str(tmp_path / "img.npz"), samples_key="images", labels_key="cls", normalize="minmax")
    assert ds.info.kind == "image" and ds.info.sample_shape == (1, 5, 6)
    assert ds.info.num_classes == 4 and ds.info.cond_dim == 0
    assert ds.info.value_range == (-1.0, 1.0)
    assert float(ds.data.min()) == -1.0 and float(ds.data.max()) == 1.0
    xi, yi = ds[5]
    assert xi.shape == (1, 5, 6) and yi.dtype == torch.long and yi.ndim == 0 and int(yi) == 1
    torch.testing.assert_close(ds.denormalize(ds.data)[:, 0], torch.from_numpy(x).float(), atol=1e-4, rtol=0)
    assert ds.info.protocol["labels_key"] == "cls" and ds.info.protocol["normalize"] == "minmax"
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch_x.shape == (8, 1, 5, 6) and batch_y.tolist() == [0, 1, 2, 3] * 2


def test_pt_dict_with_conditions_and_standardization(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g) * torch.tensor([10.0, 0.1]) + torch.tensor([5.0, -3.0])
    energy = torch.rand(40, generator=g) * 100
    torch.save({"x": x, "energy": energy, "extra": torch.zeros(3)}, tmp_path / "d.pt")
    ds = tensor_file(str(tmp_path / "d.pt"), conditions_key="energy", normalize="standard")
    assert ds.info.cond_dim == 1 and ds.info.num_classes == 0
    xi, ci = ds[0]
    assert ci.shape == (1,) and ci.dtype == torch.float32 and float(ci) == pytest.approx(float(energy[0]))
    torch.testing.assert_close(ds.data.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.data.std(0, correction=0), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.denormalize(ds.data), x, atol=1e-4, rtol=1e-5)


def test_standardization_is_per_channel_for_images(tmp_path: Path) -> None:
    x = torch.stack([torch.full((10, 3, 3), 2.0), torch.arange(90.0).reshape(10, 3, 3)], dim=1)  # (10, 2, 3, 3)
    torch.save(x, tmp_path / "im.pt")
    ds = tensor_file(str(tmp_path / "im.pt"), normalize="standard")
    assert ds.shift.shape == (2, 1, 1) and ds.data.shape == (10, 2, 3, 3)
    assert ds.data[:, 0].abs().max() == 0  # a constant channel is only centred
    assert float(ds.data[:, 1].std(correction=0)) == pytest.approx(1.0, abs=1e-5)


def test_channels_last(tmp_path: Path) -> None:
    x = np.zeros((4, 8, 8, 3), dtype=np.float32)
    x[..., 2] = 1.0
    np.save(tmp_path / "hwc.npy", x)
    with pytest.warns(UserWarning, match="set channels_last: true"):
        assert tensor_file(str(tmp_path / "hwc.npy")).info.sample_shape == (4, 8, 8, 3)[1:]
    ds = tensor_file(str(tmp_path / "hwc.npy"), channels_last=True)
    assert ds.info.sample_shape == (3, 8, 8) and float(ds.data[:, 2].min()) == 1.0


# -- errors: each names the parameter or file, the value, what was expected, and the fix ------------


def test_missing_file_names_path_and_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        tensor_file("data/missing.npy")
    msg = str(err.value)
    assert "data/missing.npy does not exist" in msg
    assert f"relative paths are relative to the working directory, {os.getcwd()}" in msg
    assert str(tmp_path / "data" / "missing.npy") in msg


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has extension '\.csv'; supported: \.npy, \.npz, \.pt, \.pth"):
        tensor_file(str(tmp_path / "data.csv"))


def test_unknown_key_lists_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", samples=np.zeros((3, 2)), labels=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"samples_key: .*a\.npz has no array named 'x'; the file holds: 'samples', 'labels'"):
        tensor_file(str(tmp_path / "a.npz"))
    with pytest.raises(ValueError, match=r"labels_key: .* no array named 'y'; the file holds: 'samples', 'labels'"):
        tensor_file(str(tmp_path / "a.npz"), samples_key="samples", labels_key="y")


def test_labels_length_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 2)), y=np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match=r"labels 'y' in .* has 9 entries but samples 'x' in .* has 10 samples"):
        tensor_file(str(tmp_path / "a.npz"), labels_key="y")


def test_labels_must_be_integers(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)), y=np.array([0.0, 1.0, 2.0]), z=np.array([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels 'y' .* must be integer class indices, got dtype torch.float64\. They are whole numbers"):
        tensor_file(str(tmp_path / "a.npz"), labels_key="y")
    with pytest.raises(ValueError, match=r"must be integer class indices.* use\s+conditions_key"):
        tensor_file(str(tmp_path / "a.npz"), labels_key="z")
    np.savez(tmp_path / "neg.npz", x=np.zeros((3, 2)), y=np.array([0, -1, 2]))
    with pytest.raises(ValueError, match="negative class indices \\(first at sample 1\\)"):
        tensor_file(str(tmp_path / "neg.npz"), labels_key="y")


def test_labels_and_conditions_together(tmp_path: Path) -> None:
    """Both keys: y is one float row per sample, the class index then the conditions (issue 7)."""
    c = np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]])
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)), y=np.array([1, 0, 2]), c=c, short=np.array([0, 1]))
    ds = tensor_file(str(tmp_path / "a.npz"), labels_key="y", conditions_key="c")
    assert (ds.info.num_classes, ds.info.cond_dim) == (3, 2)
    assert ds.targets.dtype == torch.float32 and ds.targets.shape == (3, 3)
    labels, conds = ds.info.split_conditions(ds.targets)
    assert labels.tolist() == [1, 0, 2]
    np.testing.assert_allclose(conds.numpy(), c)
    assert ds[1][1].tolist() == [0.0, 1.5, 2.0]
    with pytest.raises(ValueError, match=r"labels 'short' .* has 2 entries but samples 'x' .* has 3 samples"):
        tensor_file(str(tmp_path / "a.npz"), labels_key="short", conditions_key="c")
    with pytest.raises(ValueError, match=r"conditions 'short' .* has 2 entries but samples 'x' .* has 3 samples"):
        tensor_file(str(tmp_path / "a.npz"), labels_key="y", conditions_key="short")


def test_non_finite_values_count_and_first_index(tmp_path: Path) -> None:
    x = np.zeros((10, 2))
    x[4, 1] = np.nan
    x[7, 0] = np.inf
    x[7, 1] = -np.inf
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(ValueError, match=r"contains 3 non-finite values .* the first is in sample 4\. .*nan_to_num"):
        tensor_file(str(tmp_path / "bad.npy"))
    c = np.ones(10)
    c[6] = np.nan
    np.savez(tmp_path / "c.npz", x=np.zeros((10, 2)), c=c)
    with pytest.raises(ValueError, match=r"conditions 'c' .* contains 1 non-finite value \(.*first is in sample 6"):
        tensor_file(str(tmp_path / "c.npz"), conditions_key="c")


def test_empty_array(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"the samples in .*e\.npy is empty \(shape \(0, 2\)\); expected at least one"):
        tensor_file(str(tmp_path / "e.npy"))


def test_single_array_has_no_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"labels_key: .* holds a single array .*np\.savez"):
        tensor_file(str(tmp_path / "x.npy"), labels_key="y")


def test_bad_shapes_and_values(tmp_path: Path) -> None:
    np.save(tmp_path / "5d.npy", np.zeros((2, 1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 1, 1, 2, 2\); expected \(N,\), \(N, d\) for points"):
        tensor_file(str(tmp_path / "5d.npy"))
    np.save(tmp_path / "const.npy", np.ones((4, 2)))
    with pytest.raises(ValueError, match="normalize: minmax cannot scale .* every value equals 1.0"):
        tensor_file(str(tmp_path / "const.npy"), normalize="minmax")
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="has dtype <U1; expected numbers"):
        tensor_file(str(tmp_path / "str.npy"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"could not read .*junk\.pt with torch\.load\(weights_only=True\)"):
        tensor_file(str(tmp_path / "junk.pt"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"could not read .*junk\.npz as a NumPy \.npz file"):
        tensor_file(str(tmp_path / "junk.npz"))
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list; expected a tensor or a dict of tensors"):
        tensor_file(str(tmp_path / "list.pt"))


def test_discovered_through_entry_point(registry, tmp_path: Path) -> None:
    comp = registry.get("dataset", "tensor-file")
    assert comp.plugin == "tensor-file"
    params = {p.name: p for p in comp.parameters()}
    assert params["path"].required and params["normalize"].default == "none"
    np.save(tmp_path / "p.npy", np.ones((5, 2)))
    ds = registry.build("dataset", {"name": "tensor-file", "path": str(tmp_path / "p.npy")}, seed=1)
    assert len(ds) == 5
    with pytest.raises(ConfigError, match=r"dataset.normalize: expected 'none' \| 'minmax' \| 'standard'"):
        registry.build("dataset", {"name": "tensor-file", "path": "x.npy", "normalize": "zscore"})
    with pytest.raises(ConfigError, match=r"dataset \(dataset 'tensor-file' from .*\): path: nope\.npy does not exist"):
        registry.build("dataset", {"name": "tensor-file", "path": "nope.npy"})
