"""ganforge-torchvision: the separate distribution's datasets and their error paths.

torchvision is not installed on our machines (and must not be: PyPI's pulls a CUDA torch), so the
"installed" paths run against a fake ``torchvision`` module put into ``sys.modules``.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

import ganforge_torchvision as gtv
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry

DATASETS = {"mnist": gtv.mnist, "fashion-mnist": gtv.fashion_mnist, "cifar10": gtv.cifar10}


def _fake_torchvision(monkeypatch, n=6):
    """A stand-in torchvision whose dataset classes build small tensors as the real ones store them."""
    calls = []

    class _MNISTLike:
        def __init__(self, root, train=True, download=False):
            calls.append((type(self).__name__, root, train, download))
            assert download is False
            g = torch.Generator().manual_seed(0 if train else 1)
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
            self.data[0, 0, 0], self.data[0, 0, 1] = 0, 255
            self.targets = torch.arange(n) % 10

    class MNIST(_MNISTLike):
        pass

    class FashionMNIST(_MNISTLike):
        pass

    class CIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append(("CIFAR10", root, train, download))
            assert download is False
            self.data = np.random.RandomState(0).randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
            self.data[0, 0, 0] = (255, 0, 128)
            self.targets = [i % 10 for i in range(n)]

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0-fake"
    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST, datasets.FashionMNIST, datasets.CIFAR10 = MNIST, FashionMNIST, CIFAR10
    tv.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return calls


def _put_cifar(root, n=6, payload=None):
    """CIFAR-10 python batches as the real ones are stored: pickled dicts, 'data' uint8 (N, 3072)
    channel-major rows, 'labels' a list. ``payload`` is put into test_batch (a tampered file)."""
    folder = root / gtv.SOURCES["cifar10"].folder
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(gtv.SOURCES["cifar10"].files):
        hwc = np.random.RandomState(i).randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
        hwc[0, 0, 0] = (255, 0, 128)
        entry = {"batch_label": f, "labels": [(k + i) % 10 for k in range(n)],
                 "data": hwc.transpose(0, 3, 1, 2).reshape(n, 3072), "filenames": [f"{k}.png" for k in range(n)]}
        if f == "batches.meta":
            entry = {"label_names": list(gtv.SOURCES["cifar10"].classes)}
        if f == "test_batch" and payload is not None:
            entry["filenames"] = payload
        (folder / f).write_bytes(pickle.dumps(entry, protocol=2))
    return folder


def _put_files(root, name, skip=()):
    src = gtv.SOURCES[name]
    folder = root / src.folder
    folder.mkdir(parents=True, exist_ok=True)
    for f in src.files:
        if f not in skip:
            (folder / f).write_bytes(b"")
    return folder


# -- torchvision missing --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_torchvision_missing_error(name, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now fails, installed or not
    with pytest.raises(gtv.TorchvisionMissing) as e:
        DATASETS[name](root=str(tmp_path))
    msg = str(e.value)
    assert f"dataset '{name}' needs torchvision, which is not installed" in msg
    assert "pip install torchvision" in msg and "must match the installed torch" in msg and torch.__version__ in msg
    assert isinstance(e.value, ImportError) and isinstance(e.value, ValueError)


def test_install_hint_names_the_matching_release(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert gtv._matching_torchvision() == "torchvision==0.28.* --index-url https://download.pytorch.org/whl/cpu"
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert gtv._matching_torchvision() == "torchvision==0.20.*"


def test_torchvision_that_fails_to_import_error(tmp_path, monkeypatch):
    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(gtv.importlib, "import_module", broken)
    with pytest.raises(gtv.TorchvisionMissing) as e:
        gtv.mnist(root=str(tmp_path))
    msg = str(e.value)
    assert "installed but failed to import" in msg and "torchvision::nms" in msg and "built for another torch" in msg


def test_torchvision_missing_is_a_config_error_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    reg = load_registry(disabled=["torchvision"], extra=[("torchvision", gtv)], warn=False)
    with pytest.raises(ConfigError, match=r"dataset \(dataset 'mnist'.*pip install torchvision"):
        reg.build("dataset", {"name": "mnist", "root": str(tmp_path)})


# -- files missing --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_files_missing_error_says_which_files_where(name, tmp_path, monkeypatch):
    calls = _fake_torchvision(monkeypatch)
    src = gtv.SOURCES[name]
    with pytest.raises(FileNotFoundError) as e:
        DATASETS[name](root=str(tmp_path))
    msg = str(e.value)
    assert f"dataset '{name}'" in msg and f"torchvision.datasets.{src.cls}(root='{tmp_path}', download=False)" in msg
    for f in src.files:
        assert f"{tmp_path / src.folder / f}  (missing)" in msg
    assert "never downloads" in msg and ("https://" in msg or "http://" in msg)
    assert calls == []  # torchvision was never asked to load anything


def test_files_partly_present_are_marked(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    folder = _put_files(tmp_path, "mnist", skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(FileNotFoundError) as e:
        gtv.mnist(root=str(tmp_path))
    msg = str(e.value)
    assert "1 of the 4 files" in msg
    assert f"{folder / 'train-images-idx3-ubyte'}  (present)" in msg
    assert f"{folder / 't10k-labels-idx1-ubyte'}  (missing)" in msg
    assert "gunzip" in msg and "ossci-datasets.s3.amazonaws.com/mnist" in msg


def test_cifar_error_says_how_to_unpack(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    with pytest.raises(FileNotFoundError) as e:
        gtv.cifar10(root=str(tmp_path))
    assert "cifar-10-python.tar.gz" in str(e.value) and "cifar-10-batches-py" in str(e.value)


# -- with (fake) torchvision and files ------------------------------------------------------------


def test_mnist_items_shapes_ranges_labels(tmp_path, monkeypatch):
    calls = _fake_torchvision(monkeypatch)
    _put_files(tmp_path, "mnist")
    ds = gtv.mnist(root=str(tmp_path), train=False)
    assert calls == [("MNIST", str(tmp_path), False, False)]
    assert len(ds) == 6 and ds.info.sample_shape == (1, 28, 28) and ds.info.num_classes == 10
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x[0, 0, 0] == -1.0 and x[0, 0, 1] == 1.0 and x.min() >= -1 and x.max() <= 1
    p = ds.info.protocol
    assert p["source"] == "torchvision.datasets.MNIST" and p["split"] == "test" and len(p["data_sha256"]) == 64


def test_resolution_and_unlabelled(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    _put_files(tmp_path, "fashion-mnist")
    ds = gtv.fashion_mnist(root=str(tmp_path), labels=False, resolution=32)
    x = ds[1]
    assert isinstance(x, torch.Tensor) and x.shape == (1, 32, 32) and ds.info.sample_shape == (1, 32, 32)
    assert ds.info.num_classes == 0 and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match=r"dataset 'fashion-mnist': resolution=0; expected a positive integer"):
        gtv.fashion_mnist(root=str(tmp_path), resolution=0)


def test_cifar_is_channels_first(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # CIFAR-10 is read here, without torchvision
    _put_cifar(tmp_path)
    ds = gtv.cifar10(root=str(tmp_path))
    x, y = ds[0]
    assert len(ds) == 5 * 6 and x.shape == (3, 32, 32) and ds.info.sample_shape == (3, 32, 32)
    assert x[:, 0, 0].tolist() == [1.0, -1.0, pytest.approx(128 / 127.5 - 1, abs=1e-6)]
    assert ds[6][1] == 1 and ds[7][1] == 2  # data_batch_2's labels follow data_batch_1's
    assert ds.info.protocol["classes"][0] == "airplane" and ds.info.protocol["torchvision_version"] == "not used"
    test = gtv.cifar10(root=str(tmp_path), train=False)
    assert len(test) == 6 and test[0][1] == 5


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tampered_cifar_batch_runs_nothing(tmp_path):
    """torchvision.datasets.CIFAR10 would pickle.load this file and run the command; we refuse it."""
    marker = tmp_path / "ran"
    folder = _put_cifar(tmp_path, payload=_Payload(marker))
    with pytest.raises(ValueError) as e:
        gtv.cifar10(root=str(tmp_path), train=False)
    msg = str(e.value)
    assert f"dataset 'cifar10': {folder / 'test_batch'} contains pickled Python objects that are not plain data " \
           "(global posix.system)" in msg
    assert "never executes code from files" in msg and "cifar-10-python.tar.gz" in msg
    assert not marker.exists()
    assert len(gtv.cifar10(root=str(tmp_path))) == 30  # the training batches are intact and load
    (folder / "test_batch").write_text("not a pickle")
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR-10 batch .*replace it: download"):
        gtv.cifar10(root=str(tmp_path), train=False)


def test_legacy_mnist_layout_is_accepted(tmp_path, monkeypatch):
    _fake_torchvision(monkeypatch)
    (tmp_path / "MNIST" / "processed").mkdir(parents=True)
    for f in ("training.pt", "test.pt"):
        (tmp_path / "MNIST" / "processed" / f).write_bytes(b"")
    assert len(gtv.mnist(root=str(tmp_path))) == 6


# -- discovery ------------------------------------------------------------------------------------


def test_registers_three_datasets():
    reg = load_registry(disabled=["torchvision"], extra=[("torchvision", gtv)], warn=False)
    for name in DATASETS:
        comp = reg.get("dataset", name)
        assert [p.name for p in comp.parameters()][:2] == ["root", "train"]
        assert comp.parameters()[0].required and comp.parameters()[1].default is True


def test_found_through_its_entry_point():
    try:
        dist = md.distribution("ganforge-torchvision")
    except md.PackageNotFoundError:
        pytest.skip("ganforge-torchvision is not installed: pip install -e plugins/ganforge-torchvision")
    assert any(ep.group == "ganforge" and ep.name == "torchvision" for ep in dist.entry_points)
    reg = load_registry(warn=False)
    assert reg.get("dataset", "mnist").distribution == "ganforge-torchvision"
    assert reg.get("dataset", "cifar10").plugin == "torchvision"
