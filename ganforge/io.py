"""Atomic file writes, safe loading and the on-disk cache: nothing half-written is ever left behind,
and nothing read from a file is ever executed (checkpoints and caches are data, never code)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickletools
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]


DISK_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (or the file is immutable)",
}
# What torch.save says when the stream under it fails (it does not pass the OSError on).
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter failed|iostream|file write failed|unexpected pos")


class DiskWriteError(OSError):
    """Writing a run's file failed for a reason outside ganforge: a full disk, a read-only file
    system, no permission. The message names the file, the cause, whether the run's previous
    checkpoint exists (files are replaced atomically, so it is intact) and the fix."""

    def __init__(self, path: PathLike, code: int, cause: str) -> None:
        super().__init__(code, cause, os.fspath(path) or None)
        self.path = Path(path) if os.fspath(path) else None  # None: the OS did not say which file
        self.cause = cause

    @classmethod
    def wrap(cls, exc: BaseException, path: PathLike | None = None) -> "DiskWriteError | None":
        """``exc`` as a DiskWriteError when it is one of the disk causes, else None."""
        if isinstance(exc, DiskWriteError):
            return exc
        if isinstance(exc, OSError) and exc.errno in DISK_CAUSES:
            return cls(path or exc.filename or "", exc.errno, DISK_CAUSES[exc.errno])
        if isinstance(exc, RuntimeError) and path is not None and _TORCH_WRITE_FAILED.search(str(exc)):
            try:
                full = shutil.disk_usage(Path(path).parent).free < (1 << 20)
            except OSError:
                full = False
            return cls(path, errno.ENOSPC, "the disk is full" if full else "writing failed (is the disk full?)")
        return None

    def __str__(self) -> str:
        p = self.path
        if p is None:
            fix = "free space or make it writable, or set root_dir to another directory"
            return f"writing a file of the run failed: {self.cause}. Fix: {fix}."
        where = p.parent
        run = p.parent.parent if p.parent.name in ("checkpoints", "samples") else p.parent
        last = run / "checkpoints" / "last.ckpt"
        if last.is_file():
            kept = (f" The previous checkpoint {last} is intact (files are replaced atomically); after the fix, "
                    f"resume with --resume {last}.")
        else:
            kept = " No checkpoint of this run had been written yet."
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"free space on the disk holding {where} (`df -h {where}`) or set root_dir to a disk with room"
        elif self.errno == errno.EROFS:
            fix = f"set root_dir to a writable directory ({where} is on a read-only file system)"
        else:
            fix = f"make {where} writable for this user, or set root_dir to a directory you can write"
        return f"cannot write {p}: {self.cause}.{kept} Fix: {fix}."


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temporary file is fsynced before ``os.replace``, so a crash leaves either the old file
    or the new one, never a truncated one. A full disk, a read-only file system or a missing
    permission raises :class:`DiskWriteError` naming ``path``.
    """
    try:
        with _atomic_path(path) as tmp:
            yield tmp
    except (OSError, RuntimeError) as exc:
        err = DiskWriteError.wrap(exc, path)
        if err is None:
            raise
        raise err from None


@contextlib.contextmanager
def _atomic_path(path: PathLike) -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # make the rename durable where the platform allows
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def jsonable(obj: Any) -> Any:
    """Plain data for JSON: tensors as (nested) lists of numbers, dict keys as strings."""
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # a tensor (io.py does not import torch)
        return obj.detach().cpu().tolist()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


NEVER_EXECUTES = "ganforge never executes code from files"


class UnsafeFileError(ValueError):
    """A file holds pickled Python objects other than plain data (tensors, numbers, strings, lists,
    dicts): unpickling them could run any code, so ganforge does not load it.

    ``found`` names the offending globals (``module.name``) where they can be read without loading.
    """

    def __init__(self, path: PathLike, found: list[str]) -> None:
        self.path = Path(path)
        self.found = list(found)
        names = ", ".join(self.found[:5]) + (", ..." if len(self.found) > 5 else "") if self.found else "unnamed"
        # the message without the path, for callers that name the file their own way
        self.what = f"contains pickled Python objects that are not plain data ({names})"
        super().__init__(f"'{path}' {self.what}")


def _stream_globals(path: PathLike, limit: int = 1 << 24) -> Optional[list[str]]:
    """The globals a plain (non-zip) pickle file imports, found by disassembling it without running
    anything; ``None`` when the file is not a complete pickle stream (a text file, random bytes)."""
    found: list[str] = []
    complete = False
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            while f.tell() < limit:  # a legacy torch file is several pickles in a row
                ops = 0
                for op, arg, _ in pickletools.genops(f):
                    ops += 1
                    if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                        strings.append(str(arg))
                    elif op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                if not ops:
                    break
                complete = True
    except Exception:  # noqa: BLE001 - the bytes after the last complete pickle are not our business
        pass
    return found if complete else None


def _unsafe_globals(path: PathLike, message: str) -> Optional[list[str]]:
    """The globals that made ``torch.load(weights_only=True)`` refuse ``path``, or ``None`` when the
    refusal was about something else (the file is corrupt or not a torch file at all)."""
    import torch

    from torch import _weights_only_unpickler as wo

    try:
        allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - private API; report every global then
        allowed = set()
    if zipfile.is_zipfile(path):
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(os.fspath(path))
        except Exception:  # noqa: BLE001
            found = []
        named = re.findall(r"GLOBAL (\S+?)[ ,]|for unrecognized function (\S+)|but got <class '([^']+)'>", message)
        found += [n for groups in named for n in groups if n and n not in found]
        return found or None  # refused for another reason: corrupt, not named here
    found = _stream_globals(path)
    if found is None:
        return None
    found = [g for g in found if g not in allowed]
    return found or None


def torch_load_data(path: PathLike, *, mmap: bool = False, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers, nothing else.

    Raises:
        UnsafeFileError: ``path`` holds pickled objects that are not plain data (a hostile file, or
            one written by code that stored arbitrary Python objects); nothing in it was run.
        Exception: whatever ``torch.load`` raises for a missing, truncated or foreign file.
    """
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = _unsafe_globals(path, str(exc)) if "Weights only load failed" in str(exc) else None
        if found is None:
            raise pickle.UnpicklingError(str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]) from None
        raise UnsafeFileError(path, found) from None
    except RuntimeError as exc:
        if mmap and "mmap can only be used" in str(exc):  # not a zip file: an old format, a pickle, or junk
            return torch_load_data(path, mmap=False, map_location=map_location)
        raise


def json_safe(obj: Any, where: str = "", bad: dict[str, str] | None = None) -> Any:
    """``obj`` with every NaN/inf float replaced by ``None`` (JSON has no NaN: Python's bare ``NaN``
    makes the file unreadable for strict parsers); ``bad`` collects ``{dotted.key: "nan"}``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if bad is not None:
            bad[where or "(top)"] = str(obj)
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v, f"{where}.{k}" if where else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]", bad) for i, v in enumerate(obj)]
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    """Strict JSON, atomically. Non-finite numbers become ``null``, and a mapping gets a
    ``non_finite`` entry naming them: ``{"metrics.fid.values.fid": "nan"}``."""
    bad: dict[str, str] = {}
    obj = json_safe(obj, "", bad)
    if bad and isinstance(obj, dict):
        obj = {**obj, "non_finite": bad}
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that quote a bad value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stable_hash(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``obj``: a cache key."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_dir() -> Path:
    """Where ganforge caches real-data statistics: ``$GANFORGE_CACHE`` or ``~/.cache/ganforge``."""
    root = os.environ.get("GANFORGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ganforge"
    )
    return Path(root)


def cached_torch(key: dict[str, Any], compute: Callable[[], Any], subdir: str = "stats") -> tuple[Any, Path, bool]:
    """Load ``compute()``'s result from the cache under ``stable_hash(key)`` or compute and store it.

    Returns ``(value, path, hit)``. The key is stored beside the value, so a cache entry says
    what it was computed from. ``value`` must be plain data (tensors, numbers, strings, lists,
    dicts): entries are read with ``torch.load(weights_only=True)``. An entry holding anything
    else is deleted unread, with a one-line warning naming it, and recomputed.
    """
    path = cache_dir() / subdir / f"{stable_hash(key)}.pt"
    if path.exists():
        try:
            blob = torch_load_data(path)
            if isinstance(blob, dict) and blob.get("key") == json.loads(json.dumps(key, sort_keys=True, default=str)):
                return blob["value"], path, True
        except UnsafeFileError as exc:
            print(f"ganforge: warning: cache entry {exc} and was not loaded ({NEVER_EXECUTES}); deleted, the "
                  "statistics are recomputed.", file=sys.stderr)
            with contextlib.suppress(OSError):
                path.unlink()
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed, never trusted
            pass
    value = compute()
    atomic_torch_save({"key": json.loads(json.dumps(key, sort_keys=True, default=str)), "value": value}, path)
    return value, path, False
