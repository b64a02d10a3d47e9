"""ganforge plugin: MNIST, Fashion-MNIST and CIFAR-10 through torchvision, from local files only.

A separate distribution (``pip install -e plugins/ganforge-torchvision``), written the way a
third party would write one: an entry point in the ``ganforge`` group naming this module, and
hook implementations marked with :data:`ganforge.hookimpl`.

torchvision is imported only when one of these datasets is built, so ``ganforge plugins`` and
every other dataset work without it. Nothing is ever downloaded (``download=False``): when the
files are missing, the error lists which files to put where.

Items are ``(x, y)`` (``x`` float32 ``(C, H, W)`` in ``[-1, 1]``, ``y`` the class as ``long``), or
just ``x`` with ``labels=False``.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganforge import hookimpl
from ganforge.components import DataInfo

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
    tv = import_torchvision(name)
    check_files(source, root)
    ds = getattr(tv.datasets, source.cls)(root=root, train=train, download=False)
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # CIFAR is stored (N, H, W, C)
    images = images.to(torch.uint8).contiguous()
    targets = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
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
            "source": f"torchvision.datasets.{source.cls}",
            "torchvision_version": str(getattr(tv, "__version__", "?")),
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


@hookimpl
def ganforge_register_datasets(register) -> None:
    register("mnist", mnist, description="MNIST digits via torchvision, from local files (never downloads)")
    register("fashion-mnist", fashion_mnist, description="Fashion-MNIST via torchvision, from local files (never downloads)")
    register("cifar10", cifar10, description="CIFAR-10 via torchvision, from local files (never downloads)")
