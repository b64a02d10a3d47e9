"""The user's own arrays as a dataset (``dataset.name: tensor-file``).

Reads ``.npy`` (one array: the samples), ``.npz`` (named arrays) or ``.pt``/``.pth`` (a tensor,
or a dict of tensors, loaded with ``torch.load(weights_only=True)`` so a data file cannot run
code). Optional class labels (integers), continuous conditions (floats), or both: then each
sample's ``y`` is one float row, the class index followed by the conditions
(:meth:`ganforge.DataInfo.split_conditions`).

The kind of data follows the samples' shape:

=================  ============================  ==============
array shape        sample shape                  ``info.kind``
=================  ============================  ==============
``(N,)``           ``(1,)``                      points
``(N, d)``         ``(d,)``                      points
``(N, H, W)``      ``(1, H, W)`` (channel added)  image
``(N, C, H, W)``   ``(C, H, W)``                 image
=================  ============================  ==============

Channels-last images ``(N, H, W, C)`` need ``channels_last: true``.

``normalize`` (default ``none``: the data is used as stored):

* ``minmax``: one affine map of all values onto [-1, 1] (global min and max, so the relative
  scale of features or channels is kept); ``info.value_range`` is ``(-1, 1)``.
* ``standard``: zero mean and unit standard deviation per feature (points) or per channel
  (images); a constant feature is only centred.

:meth:`TensorFileDataset.denormalize` maps generated samples back to the file's units; the map is
kept as plain data in ``info.denormalize`` (so in checkpoints), and ``ganforge sample`` writes
``samples.npz`` in the file's units.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ganforge import NEVER_EXECUTES, DataInfo, Register, UnsafeFileError, hookimpl, sha256_file, torch_load_data

Normalize = Literal["none", "minmax", "standard"]

SUPPORTED_EXTENSIONS = (".npy", ".npz", ".pt", ".pth")


class TensorFileDataset(Dataset):
    """Samples (and labels or conditions) held in memory as tensors.

    Attributes:
        data: Samples, float32 ``(N, *sample_shape)``, normalized.
        targets: Class indices (long ``(N,)``), conditions (float32 ``(N, cond_dim)``), both
            (float32 ``(N, 1 + cond_dim)``, the class index in column 0) or ``None``.
        shift: Added back by :meth:`denormalize` (broadcasts against one sample or a batch).
        scale: Multiplied back by :meth:`denormalize`.
        info: The dataset's :class:`ganforge.DataInfo`.
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: Optional[torch.Tensor],
        info: DataInfo,
        shift: torch.Tensor,
        scale: torch.Tensor,
    ) -> None:
        super().__init__()
        self.data = data
        self.targets = targets
        self.info = info
        self.shift = shift
        self.scale = scale

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if self.targets is None:
            return self.data[index]
        return self.data[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        # One gather per batch instead of a Python loop over rows in the DataLoader.
        idx = torch.as_tensor(indices, dtype=torch.long)
        xs = self.data[idx].unbind(0)
        if self.targets is None:
            return list(xs)
        return list(zip(xs, self.targets[idx].unbind(0)))

    def tensors(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """All samples at once (``ganforge.loop.data.InMemoryDataset``: ``train.data_on_device``)."""
        return self.data, self.targets

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map samples from the training scale back to the units stored in the file
        (``info.to_stored_units``, the one home of the map, in ``x``'s dtype)."""
        return self.info.to_stored_units(x).to(x.dtype)


# -- reading -----------------------------------------------------------------------------------------


class _Contents:
    """What a file holds: named arrays (``.npz``, ``.pt`` dict) or one unnamed array."""

    def __init__(self, path: str, arrays: Optional[dict[str, Any]] = None, single: Any = None) -> None:
        self.path = path
        self.arrays = arrays
        self.single = single

    def keys(self) -> list[str]:
        return [str(k) for k in self.arrays] if self.arrays is not None else []

    def get(self, key: str, param: str) -> Any:
        assert self.arrays is not None
        if key not in self.arrays:
            held = ", ".join(repr(k) for k in self.arrays) or "nothing"
            raise ValueError(
                f"{param}: {self.path} has no array named {key!r}; the file holds: {held}. "
                f"Set {param} to one of them."
            )
        return self.arrays[key]


def _read(path: str, resolved: Path) -> _Contents:
    ext = resolved.suffix.lower()
    if ext == ".npy":
        try:
            return _Contents(path, single=np.load(resolved, allow_pickle=False))
        except (ValueError, OSError, EOFError) as exc:  # object arrays, or not a .npy file at all
            raise ValueError(f"path: could not read {path} as a NumPy .npy file: {exc}") from exc
    if ext == ".npz":
        try:
            with np.load(resolved, allow_pickle=False) as npz:
                return _Contents(path, arrays={k: npz[k] for k in npz.files})
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(
                f"path: could not read {path} as a NumPy .npz file: {exc}. Save numeric arrays only "
                "(np.savez(path, x=samples, y=labels))."
            ) from exc
    try:
        obj = torch_load_data(resolved)
    except UnsafeFileError as exc:
        raise ValueError(
            f"path: {path} {exc.what}; {NEVER_EXECUTES}, so it was not loaded and nothing in it ran. "
            "Save a tensor or a dict of tensors (torch.save({'x': samples, 'y': labels}, path)); for NumPy arrays "
            "use .npz."
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError) as exc:
        raise ValueError(
            f"path: could not read {path} with torch.load(weights_only=True): {exc}. Save a tensor or a dict "
            "of tensors (torch.save({'x': samples, 'y': labels}, path)); for NumPy arrays use .npz."
        ) from exc
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return _Contents(path, single=obj)
    if isinstance(obj, dict):
        return _Contents(path, arrays=obj)
    raise ValueError(
        f"path: {path} holds a {type(obj).__name__}; expected a tensor or a dict of tensors "
        "(torch.save({'x': samples, 'y': labels}, path))."
    )


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """A CPU tensor from a NumPy array or tensor; integer data becomes int64."""
    if isinstance(value, np.ndarray):
        if not value.dtype.isnative:  # torch reads native byte order only
            value = value.astype(value.dtype.newbyteorder("="))
        if value.dtype.kind in "iu":
            return torch.from_numpy(value.astype(np.int64))
        if value.dtype.kind in "fb":
            return torch.from_numpy(np.ascontiguousarray(value))
        raise ValueError(f"{what} has dtype {value.dtype}; expected numbers (integer or floating point).")
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"{what} has dtype {value.dtype}; expected real numbers.")
        return value.detach().cpu()
    raise ValueError(f"{what} is a {type(value).__name__}; expected an array (NumPy array or tensor).")


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _check_finite(t: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1))
    count = int(bad.sum())
    if count:
        first = int(bad.any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{what} contains {count} non-finite value{'s' if count > 1 else ''} (NaN or ±inf, or too large for "
            f"float32); the first is in sample {first}. Remove or replace them (e.g. np.nan_to_num) before training."
        )


def _samples(raw: torch.Tensor, what: str, channels_last: bool) -> tuple[torch.Tensor, str]:
    """Samples as float32 ``(N, *sample_shape)`` and the data kind."""
    if raw.ndim == 0 or raw.shape[0] == 0 or raw.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(raw.shape)}); expected at least one sample.")
    if channels_last and raw.ndim != 4:
        raise ValueError(
            f"channels_last: true needs samples of shape (N, H, W, C), but {what} has shape {tuple(raw.shape)}."
        )
    x = raw.to(torch.float32)
    if x.ndim == 1:
        return x.reshape(-1, 1), "points"
    if x.ndim == 2:
        return x, "points"
    if x.ndim == 3:
        return x.unsqueeze(1), "image"  # (N, H, W): one channel
    if x.ndim == 4:
        if channels_last:
            return x.permute(0, 3, 1, 2).contiguous(), "image"
        if x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:  # looks like (N, H, W, C)
            warnings.warn(
                f"{what} has shape {tuple(x.shape)}, read as (N, C, H, W) with C={x.shape[1]}; if the last "
                "axis holds the channels, set channels_last: true.",
                stacklevel=3,
            )
        return x, "image"
    raise ValueError(
        f"{what} has shape {tuple(raw.shape)}; expected (N,), (N, d) for points or (N, H, W), (N, C, H, W) for images."
    )


def _labels(raw: torch.Tensor, what: str, n: int, samples: str) -> torch.Tensor:
    if not _is_integer(raw):
        hint = ""
        if raw.is_floating_point() and torch.isfinite(raw).all() and bool((raw == raw.round()).all()):
            hint = " They are whole numbers stored as floats: save them as integers (labels.astype(np.int64))."
        raise ValueError(
            f"{what} must be integer class indices, got dtype {raw.dtype}.{hint} For continuous values use "
            "conditions_key instead of labels_key."
        )
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw.reshape(-1)
    if raw.ndim != 1:
        raise ValueError(f"{what} must have shape (N,) (one class index per sample), got {tuple(raw.shape)}.")
    if raw.shape[0] != n:
        raise ValueError(
            f"{what} has {raw.shape[0]} entries but {samples} has {n} samples; labels and samples must match one to one."
        )
    if int(raw.min()) < 0:
        first = int((raw < 0).nonzero()[0, 0])
        raise ValueError(f"{what} contains negative class indices (first at sample {first}); expected 0..K-1.")
    return raw.to(torch.long)


def _conditions(raw: torch.Tensor, what: str, n: int, samples: str) -> torch.Tensor:
    if raw.ndim == 1:
        raw = raw.reshape(-1, 1)
    if raw.ndim != 2:
        raise ValueError(f"{what} must have shape (N,) or (N, k), got {tuple(raw.shape)}.")
    if raw.shape[0] != n:
        raise ValueError(
            f"{what} has {raw.shape[0]} entries but {samples} has {n} samples; conditions and samples must match "
            "one to one."
        )
    if raw.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(raw.shape)}); expected at least one condition per sample.")
    cond = raw.to(torch.float32)
    _check_finite(cond, what)
    return cond


def _normalize(x: torch.Tensor, kind: str, how: str, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(normalized, shift, scale)`` with ``x = normalized * scale + shift``."""
    sample_shape = x.shape[1:]
    if how == "none":
        return x, torch.zeros(()), torch.ones(())
    if how == "minmax":
        lo, hi = (float(v) for v in torch.aminmax(x))
        if hi == lo:
            raise ValueError(
                f"normalize: minmax cannot scale {what}: every value equals {lo}. Use normalize: none."
            )
        shift = torch.tensor((hi + lo) / 2.0)
        scale = torch.tensor((hi - lo) / 2.0)
    elif how == "standard":
        # Per feature for points, per channel for images (per-pixel statistics would erase the
        # image structure the generator is meant to learn).
        dims = (0,) if kind == "points" else (0, 2, 3)
        x64 = x.to(torch.float64)
        shift = x64.mean(dim=dims, keepdim=True)[0]
        scale = x64.std(dim=dims, keepdim=True, correction=0)[0]
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant feature is only centred
    else:
        raise ValueError(f"normalize: unknown value {how!r}; expected 'none', 'minmax' or 'standard'.")
    out = ((x.to(torch.float64) - shift) / scale).to(torch.float32)
    if how == "minmax":
        out.clamp_(-1.0, 1.0)  # rounding can land a hair outside [-1, 1]
    assert out.shape[1:] == sample_shape
    return out, shift.to(torch.float32), scale.to(torch.float32)


def tensor_file(
    path: str,
    samples_key: str = "x",
    labels_key: Optional[str] = None,
    conditions_key: Optional[str] = None,
    normalize: Normalize = "none",
    channels_last: bool = False,
) -> TensorFileDataset:
    """Your own samples from a .npy, .npz or .pt file (optionally with labels, conditions or both).

    Args:
        path: The file; a relative path is relative to the working directory ``ganforge`` runs in.
        samples_key: Name of the samples array in a .npz file or .pt dict (ignored for .npy and
            for a .pt file holding one tensor).
        labels_key: Name of an integer array of class indices, one per sample.
        conditions_key: Name of a float array of continuous conditions, ``(N,)`` or ``(N, k)``.
            With ``labels_key`` too, the dataset has both (``y`` is ``(N, 1 + k)``, class first).
        normalize: ``none`` (as stored), ``minmax`` (all values onto [-1, 1]) or ``standard``
            (zero mean, unit std per feature or image channel).
        channels_last: Samples are ``(N, H, W, C)`` images.
    """
    if normalize not in ("none", "minmax", "standard"):
        raise ValueError(f"normalize: unknown value {normalize!r}; expected 'none', 'minmax' or 'standard'.")
    resolved = Path(path).expanduser()
    ext = resolved.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"path: {path} has extension {ext or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}. "
            "Save with np.save / np.savez / torch.save."
        )
    if not resolved.is_file():
        where = "" if resolved.is_absolute() else f" (relative paths are relative to the working directory, {os.getcwd()})"
        problem = "is a directory, not a file" if resolved.is_dir() else "does not exist"
        raise FileNotFoundError(f"path: {path} {problem}{where}: {resolved.absolute()}. Give the data file's path.")

    contents = _read(path, resolved)
    if contents.single is not None:
        if labels_key is not None or conditions_key is not None:
            param = "labels_key" if labels_key is not None else "conditions_key"
            raise ValueError(
                f"{param}: {path} holds a single array (the samples), so there is nothing to read labels or "
                "conditions from. Save named arrays instead: np.savez(path, x=samples, y=labels) or "
                "torch.save({'x': samples, 'y': labels}, path)."
            )
        samples_what = f"the samples in {path}"
        raw = _as_tensor(contents.single, samples_what)
        used_key: Optional[str] = None
    else:
        samples_what = f"samples {samples_key!r} in {path}"
        raw = _as_tensor(contents.get(samples_key, "samples_key"), samples_what)
        used_key = samples_key

    x, kind = _samples(raw, samples_what, channels_last)
    _check_finite(x, samples_what)
    n = x.shape[0]

    labels: Optional[torch.Tensor] = None
    conds: Optional[torch.Tensor] = None
    num_classes = 0
    cond_dim = 0
    if labels_key is not None:
        what = f"labels {labels_key!r} in {path}"
        labels = _labels(_as_tensor(contents.get(labels_key, "labels_key"), what), what, n, samples_what)
        num_classes = int(labels.max()) + 1
    if conditions_key is not None:
        what = f"conditions {conditions_key!r} in {path}"
        conds = _conditions(_as_tensor(contents.get(conditions_key, "conditions_key"), what), what, n, samples_what)
        cond_dim = int(conds.shape[1])

    x, shift, scale = _normalize(x, kind, normalize, samples_what)
    value_range = (-1.0, 1.0) if normalize == "minmax" else tuple(float(v) for v in torch.aminmax(x))

    protocol = {
        "dataset": "tensor-file",
        # The file name and its hash, not the absolute path: the same data moved elsewhere is
        # the same data (and keeps its cached statistics).
        "file": resolved.name,
        "sha256": sha256_file(resolved),
        "samples_key": used_key,
        "labels_key": labels_key,
        "conditions_key": conditions_key,
        "normalize": normalize,
        "channels_last": channels_last,
        "num_samples": n,
        "sample_shape": list(x.shape[1:]),
    }
    info = DataInfo(
        sample_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=num_classes,
        cond_dim=cond_dim,
        kind=kind,
        value_range=value_range,  # type: ignore[arg-type]
        name="tensor-file",
        protocol=protocol,
        # Plain data in the info (and so in every checkpoint): `ganforge sample` maps samples back.
        denormalize=None if normalize == "none" else {"scale": scale.reshape(-1).tolist(),
                                                      "offset": shift.reshape(-1).tolist()},
    )
    # the layout of y for any combination (class first when both): the one home is DataInfo
    targets = info.join_conditions(labels, conds)
    return TensorFileDataset(x, targets, info, shift, scale)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_datasets(register: Register) -> None:
    register("tensor-file", tensor_file, description="Your own arrays from a .npy, .npz or .pt file.")
