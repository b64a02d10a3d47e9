"""ganforge plugin: MNIST, Fashion-MNIST and CIFAR-10 through torchvision, from local files only.

A separate distribution (``pip install -e plugins/ganforge-torchvision``), written the way a
third party would write one: an entry point in the ``ganforge`` group naming this module, and
hook implementations marked with :data:`ganforge.hookimpl`.

torchvision is imported only when one of these datasets is built, so ``ganforge plugins`` and
every other dataset work without it. Nothing is ever downloaded (``download=False``): when the
files are missing, the error lists which files to put where.

CIFAR-10's files are read here, not by ``torchvision.datasets.CIFAR10``: they are pickles, and
torchvision unpickles them with ``pickle.load``, which runs whatever code a tampered file holds.
:func:`read_cifar10` resolves only what a numpy array needs, so the files are read as data (and
CIFAR-10 needs no torchvision).

Items are ``(x, y)`` (``x`` float32 ``(C, H, W)`` in ``[-1, 1]``, ``y`` the class as ``long``), or
just ``x`` with ``labels=False``.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganforge import DataInfo, hookimpl

RESIZE_RULE = "torch bilinear interpolation, antialias=True, align_corners=False"


class TorchvisionMissing(ModuleNotFoundError, ValueError):
    """torchvision is not installed (or does not import). A ``ValueError`` too, so the engine
    reports it as a configuration error naming the dataset instead of a traceback."""


@dataclass(frozen=True)
class Source:
    """Where torchvision expects one dataset's files."""

    name: str
    cls: str  # torchvision.datasets class
    folder: str  # relative to root
    files: tuple[str, ...]
    how: str  # how to obtain them
    classes: tuple[str, ...]
    legacy: tuple[str, ...] = ()  # an older layout torchvision also reads


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist", "MNIST", "MNIST/raw", _MNIST_FILES,
        "download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of "
        "http://yann.lecun.com/exdb/mnist/) and gunzip them there",
        tuple(str(d) for d in range(10)),
        ("MNIST/processed/training.pt", "MNIST/processed/test.pt"),
    ),
    "fashion-mnist": Source(
        "fashion-mnist", "FashionMNIST", "FashionMNIST/raw", _MNIST_FILES,
        "download the four .gz files from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
        "(see https://github.com/zalandoresearch/fashion-mnist) and gunzip them there",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("FashionMNIST/processed/training.pt", "FashionMNIST/processed/test.pt"),
    ),
    "cifar10": Source(
        "cifar10", "CIFAR10", "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it in root "
        "(`tar -xzf cifar-10-python.tar.gz -C <root>`)",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}


def _matching_torchvision() -> str:
    """The pip requirement of the torchvision release built for the installed torch."""
    version = torch.__version__.split("+")[0]
    major, minor = (int(p) for p in version.split(".")[:2])
    # torchvision 0.(m+15) is built against torch 2.m (0.15 <-> 2.0, ..., 0.28 <-> 2.13).
    spec = f"torchvision==0.{minor + 15}.*" if major == 2 else "torchvision"
    if torch.version.cuda is None:
        spec += " --index-url https://download.pytorch.org/whl/cpu"
    return spec


def import_torchvision(dataset: str) -> Any:
    """``torchvision`` with its ``datasets``, or a :class:`TorchvisionMissing` saying what to install."""
    install = (
        f"Install the torchvision built for your torch {torch.__version__}: `pip install {_matching_torchvision()}`. "
        "It must match the installed torch: a plain `pip install torchvision` may replace torch with another "
        "(often multi-GB CUDA) build."
    )
    try:
        tv = importlib.import_module("torchvision")
        importlib.import_module("torchvision.datasets")
    except ModuleNotFoundError as exc:
        if exc.name not in (None, "torchvision", "torchvision.datasets"):
            raise TorchvisionMissing(
                f"dataset '{dataset}' needs torchvision, which failed to import: {exc}. {install}", name="torchvision"
            ) from exc
        raise TorchvisionMissing(
            f"dataset '{dataset}' needs torchvision, which is not installed. {install}", name="torchvision"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch fails in many ways
        raise TorchvisionMissing(
            f"dataset '{dataset}' needs torchvision, which is installed but failed to import "
            f"({type(exc).__name__}: {exc}); usually it was built for another torch. {install}", name="torchvision"
        ) from exc
    return tv


def check_files(source: Source, root: str) -> Path:
    """The folder holding ``source``'s files, or a ``FileNotFoundError`` listing what to put where."""
    base = Path(root).expanduser()
    folder = base / source.folder
    if source.legacy and all((base / f).is_file() for f in source.legacy):
        return folder
    missing = [f for f in source.files if not (folder / f).is_file()]
    if missing:
        listing = "\n".join(f"  {folder / f}  ({'missing' if f in missing else 'present'})" for f in source.files)
        raise FileNotFoundError(
            f"dataset '{source.name}': {len(missing)} of the {len(source.files)} files torchvision.datasets."
            f"{source.cls}(root={root!r}, download=False) reads are missing; it needs:\n{listing}\n"
            f"To get them: {source.how}. ganforge never downloads data: fetch the files on a machine with network "
            f"access and copy them here, or point root at the folder that holds {source.folder}/."
        )
    return folder


# -- CIFAR-10 as data ------------------------------------------------------------------------------


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of ``bytes`` call (``_codecs.encode``), for latin-1 only."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and numpy arrays; any other global is refused before
    it is imported, so nothing in the file runs (the "restricting globals" recipe of the pickle docs)."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name}")


def read_cifar10(folder: Path, train: bool) -> tuple[np.ndarray, list[int]]:
    """CIFAR-10's python batches as uint8 images ``(N, 32, 32, 3)`` (torchvision's layout) and labels.

    Raises:
        ValueError: naming the file: it holds objects other than arrays and plain data (nothing in it
            ran), or it is not a CIFAR-10 batch.
    """
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    how = SOURCES["cifar10"].how
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            if str(exc).startswith(("global ", "_codecs")):
                raise ValueError(
                    f"dataset 'cifar10': {path} contains pickled Python objects that are not plain data ({exc}); "
                    "ganforge never executes code from files, so it was not read and nothing in it ran. Replace it "
                    f"with the original: {how}."
                ) from None
            raise ValueError(f"dataset 'cifar10': {path} is not a CIFAR-10 batch ({exc}); replace it: {how}.") from None
        except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as exc:
            raise ValueError(f"dataset 'cifar10': {path} is not a CIFAR-10 batch ({type(exc).__name__}: {exc}); "
                             f"replace it: {how}.") from None
        data = entry.get("data") if isinstance(entry, dict) else None
        target = entry.get("labels") if isinstance(entry, dict) else None
        if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072
                or not isinstance(target, list) or len(target) != data.shape[0]):
            raise ValueError(f"dataset 'cifar10': {path} is not a CIFAR-10 batch (expected 'data': uint8 (N, 3072) and "
                             f"N 'labels'); replace it: {how}.")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(int(t) for t in target)
    return np.ascontiguousarray(np.concatenate(images)), labels


class TorchvisionImages(Dataset):
    """uint8 images ``(N, C, H, W)`` mapped to ``[-1, 1]`` (and resized) per item."""

    def __init__(self, images: torch.Tensor, targets: Optional[torch.Tensor], info: DataInfo,
                 resolution: Optional[int]) -> None:
        self.images = images
        self.targets = targets
        self.info = info
        self.resolution = resolution

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Any:
        x = self.images[index].to(torch.float32) / 127.5 - 1.0  # 255/127.5 is exactly 2
        if self.resolution is not None and x.shape[-1] != self.resolution:
            x = F.interpolate(x[None], size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=True)[0].clamp_(-1.0, 1.0)
        return x if self.targets is None else (x, self.targets[index])


def build(name: str, root: str, train: bool, labels: bool, resolution: Optional[int]) -> TorchvisionImages:
    source = SOURCES[name]
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise ValueError(f"dataset '{name}': resolution={resolution!r}; expected a positive integer or null (native size).")
    if name == "cifar10":  # read as data here: torchvision would pickle.load the files (see the module docstring)
        tv = None
        folder = check_files(source, root)
        raw, raw_targets = read_cifar10(folder, train)
    else:
        tv = import_torchvision(name)
        check_files(source, root)
        ds = getattr(tv.datasets, source.cls)(root=root, train=train, download=False)
        raw, raw_targets = ds.data, ds.targets
    data = torch.as_tensor(np.asarray(raw))
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # CIFAR is stored (N, H, W, C)
    images = images.to(torch.uint8).contiguous()
    targets = torch.as_tensor(np.asarray(raw_targets), dtype=torch.long)
    c, h, w = images.shape[1:]
    side_h, side_w = (resolution, resolution) if resolution is not None else (int(h), int(w))
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(targets.numpy().tobytes())
    info = DataInfo(
        sample_shape=(int(c), side_h, side_w),
        num_classes=len(source.classes) if labels else 0,
        kind="image",
        value_range=(-1.0, 1.0),
        name=name,
        protocol={
            "source": f"torchvision.datasets.{source.cls}" if tv is not None else
                      f"{source.folder} (torchvision.datasets.{source.cls}'s files, read by ganforge-torchvision)",
            "torchvision_version": str(getattr(tv, "__version__", "?")) if tv is not None else "not used",
            "split": "train" if train else "test",
            "num_samples": int(images.shape[0]),
            "data_sha256": digest.hexdigest(),
            "resolution": resolution,
            "resize": RESIZE_RULE if resolution is not None else "none",
            "value_map": "v/127.5 - 1",
            "labels": labels,
            "classes": list(source.classes),
        },
    )
    return TorchvisionImages(images, targets if labels else None, info, resolution)


def mnist(root: str, train: bool = True, labels: bool = True, resolution: Optional[int] = None) -> TorchvisionImages:
    """MNIST handwritten digits (60,000 train / 10,000 test, 28×28 grey) from local files via torchvision.

    Args:
        root: Folder holding ``MNIST/raw/`` (torchvision's layout).
        train: The training split (else the test split).
        labels: Yield ``(x, y)`` with the digit as class, or just ``x``.
        resolution: Resize to ``resolution×resolution`` (bilinear, antialiased); ``None`` keeps 28×28.
    """
    return build("mnist", root, train, labels, resolution)


def fashion_mnist(root: str, train: bool = True, labels: bool = True, resolution: Optional[int] = None) -> TorchvisionImages:
    """Fashion-MNIST (60,000 train / 10,000 test, 28×28 grey, 10 classes) from local files via torchvision.

    Args:
        root: Folder holding ``FashionMNIST/raw/`` (torchvision's layout).
        train: The training split (else the test split).
        labels: Yield ``(x, y)`` with the class, or just ``x``.
        resolution: Resize to ``resolution×resolution`` (bilinear, antialiased); ``None`` keeps 28×28.
    """
    return build("fashion-mnist", root, train, labels, resolution)


def cifar10(root: str, train: bool = True, labels: bool = True, resolution: Optional[int] = None) -> TorchvisionImages:
    """CIFAR-10 (50,000 train / 10,000 test, 32×32 RGB, 10 classes) from local files via torchvision.

    Args:
        root: Folder holding ``cifar-10-batches-py/`` (the unpacked cifar-10-python.tar.gz).
        train: The training split (else the test split).
        labels: Yield ``(x, y)`` with the class, or just ``x``.
        resolution: Resize to ``resolution×resolution`` (bilinear, antialiased); ``None`` keeps 32×32.
    """
    return build("cifar10", root, train, labels, resolution)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_datasets(register) -> None:
    register("mnist", mnist, description="MNIST digits via torchvision, from local files (never downloads)")
    register("fashion-mnist", fashion_mnist, description="Fashion-MNIST via torchvision, from local files (never downloads)")
    register("cifar10", cifar10, description="CIFAR-10 via torchvision, from local files (never downloads)")
