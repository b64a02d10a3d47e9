"""Atomic file writes and the on-disk cache: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temporary file is fsynced before ``os.replace``, so a crash leaves either the old file
    or the new one, never a truncated one.
    """
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


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


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
    what it was computed from.
    """
    import torch

    path = cache_dir() / subdir / f"{stable_hash(key)}.pt"
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
            if blob.get("key") == json.loads(json.dumps(key, sort_keys=True, default=str)):
                return blob["value"], path, True
        except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed, never trusted
            pass
    value = compute()
    atomic_torch_save({"key": json.loads(json.dumps(key, sort_keys=True, default=str)), "value": value}, path)
    return value, path, False
