"""Run directories that never collide: atomic claims, a per-run lock, cleaning ganforge's own leftovers.

* A new run claims ``<root_dir>/<name>/version_<n>`` with ``mkdir`` (no ``exist_ok``): of two
  processes that list the same versions at the same moment, one gets ``FileExistsError`` and
  takes the next number.
* The process that owns a run directory (rank 0 of the launch) holds ``flock`` on its
  ``.ganforge.lock`` while it runs. The kernel drops the lock when the process dies, even by
  ``kill -9``, so "is anyone still using this directory?" has an exact answer: a second process
  resuming the same run is refused, and a start leftover is removed only when its owner is gone.
* Start leftovers: a directory whose start failed holds only what ganforge writes before training
  (``config.yaml``, ``segments.jsonl``, the lock). A failed start removes its own; a killed one is
  removed by the next claim in the same ``<name>/``. Temporary files of atomic writes that a kill
  interrupted (``.last.ckpt.<8 chars>.tmp``) are removed when the run is resumed. Nothing else is
  ever deleted: a directory with any other file is kept as it is.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Callable, Optional

from ganforge.registry.errors import ConfigError

LOCK_NAME = ".ganforge.lock"
# What a run directory holds before training has written anything (see run._fit).
START_FILES = frozenset({"config.yaml", "segments.jsonl", LOCK_NAME})
# Temporary files of ganforge.io.atomic_path: ".<name>." + mkstemp's 8 random characters + ".tmp",
# for the names ganforge writes in a run directory, checkpoints/ and samples/.
_OURS = r"last\.ckpt|[\w.-]+\.ckpt|config(\.segment_\d+)?\.yaml|metrics\.csv|summary\.json|step_\d+\.png|progress\.png"
TMP_RE = re.compile(rf"^\.(?:{_OURS})\.[a-z0-9_]{{8}}\.tmp$")
# Swept for leftovers of other starts: version_<n> and the first-party launchers' directories. A third-party
# launcher's (pbs_<job>) is left alone, like any folder a user made: its own failed start removes itself.
RUN_DIR_RE = re.compile(r"^(version_\d+|slurm_\d+|torchrun_[\w-]+)$")
GRACE_S = 60.0  # a lock file alone, or a lock-less leftover, younger than this may be a start in progress


def _max_version(base: Path) -> int:
    versions = [int(m.group(1)) for p in base.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(versions, default=-1)


def _unwritable(path: Path, exc: OSError) -> Exception:
    """A full disk, a read-only file system, no permission: the disk error every write of a run gives
    (exit 1, :class:`ganforge.io.DiskWriteError`); anything else: a config error naming ``root_dir``."""
    from ganforge.io import DiskWriteError

    disk = DiskWriteError.wrap(exc, path)
    if disk is not None:
        return disk
    return ConfigError(f"run directory {path}: cannot create it ({exc.strerror or exc}); set root_dir= to a "
                       "writable folder (e.g. root_dir=runs) or fix the folder's permissions.")


def claim_version(base: Path, tries: int = 10_000) -> Path:
    """Create and return the next free ``base/version_<n>``; safe against concurrent claims."""
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(base, exc) from None
    # Claim first, sweep after: a number is never taken below a directory that exists, so a sweeper that
    # judged a leftover a moment ago can only find that leftover (or nothing) under its name, never a fresh
    # claim of the same number (several starts sweep the same leftovers at once; sweeping first, one could
    # remove version_0, a second claim a fresh version_0, and a third, late, remove that claim).
    n = start = _max_version(base) + 1
    for _ in range(tries):
        path = base / f"version_{n}"
        try:
            path.mkdir()  # atomic: exactly one of several concurrent callers creates it
            remove_start_leftovers(base)
            return path
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise _unwritable(path, exc) from None
    raise ConfigError(f"{base}: could not claim a free version_<n> directory (version_{start} to version_{n - 1} "
                      "were all taken while trying: other runs are starting under the same name); start this run "
                      "under another name (name=<new name>) or root_dir=, or try again when the others have started.")


# -- the run lock -------------------------------------------------------------------------------------


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.ganforge.lock``, held for the whole run by its owner.

    Where the file system does not support ``flock`` (some parallel file systems), the run goes on
    unlocked and leftovers are never judged abandoned.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        for _ in range(5):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"run directory {self.run_dir} is in use by another ganforge process "
                                      f"({_holder(self.path)}); wait for it to end, or start a new run "
                                      "without --resume.") from None
                return self  # no flock on this file system: run unlocked
            try:  # a leftover sweep may have removed the file between our open and our flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
                return self
            os.close(fd)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text() or "{}")
        return f"pid {h['pid']} on {h['host']} since {h['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _try_lock(path: Path) -> Optional[int]:
    """An fd holding the lock of an existing lock file, or ``None`` (held, gone or unsupported)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


# -- leftovers ----------------------------------------------------------------------------------------


def is_start_leftover(run_dir: Path) -> bool:
    """Only files ganforge writes before training (and their temporaries), and at least one."""
    try:
        names = [p.name for p in run_dir.iterdir()]
    except OSError:
        return False
    return bool(names) and all(n in START_FILES or TMP_RE.match(n) for n in names) and all(
        (run_dir / n).is_file() and not (run_dir / n).is_symlink() for n in names)


def _remove_files(run_dir: Path) -> bool:
    for p in run_dir.iterdir():
        if p.name in START_FILES or TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
    try:
        run_dir.rmdir()  # fails if a file appeared meanwhile: then it is kept
        return True
    except OSError:
        return False


def remove_start_leftovers(base: Path, report: Callable[[str], None] = print) -> list[Path]:
    """Remove run directories under ``base`` that a killed or failed start left behind.

    A directory qualifies when it holds only start files and nobody holds its lock; one with only
    a lock file, or from a ganforge without locks, also has to be older than a minute.
    """
    removed = []
    for run_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if not RUN_DIR_RE.match(run_dir.name) or not run_dir.is_dir() or not is_start_leftover(run_dir):
            continue
        try:  # another new run may be sweeping the same directory right now
            if _remove_if_abandoned(run_dir):
                removed.append(run_dir)
        except OSError:
            continue
    for run_dir in removed:
        report(f"ganforge: removed {run_dir}: the leftover of a start that failed before training "
               f"(it held only ganforge's start files: config.yaml, segments.jsonl, {LOCK_NAME}).")
    return removed


def _remove_if_abandoned(run_dir: Path) -> bool:
    names = {p.name for p in run_dir.iterdir()}
    if not names:
        return False  # claimed a moment ago by a new run (its lock file comes next)
    if LOCK_NAME not in names or names == {LOCK_NAME}:
        newest = max((run_dir / n).stat().st_mtime for n in names)
        if time.time() - newest < GRACE_S:
            return False
    fd = _try_lock(run_dir / LOCK_NAME) if LOCK_NAME in names else None
    if LOCK_NAME in names and fd is None:
        return False  # its owner is alive (or the file system cannot tell): keep it
    try:
        return is_start_leftover(run_dir) and _remove_files(run_dir)
    finally:
        if fd is not None:
            os.close(fd)


def remove_own_start(run_dir: Path) -> bool:
    """After a failed start: remove the run directory this process created, if training wrote nothing."""
    return is_start_leftover(run_dir) and _remove_files(run_dir)


def remove_orphan_temporaries(run_dir: Path, report: Callable[[str], None] = print) -> list[Path]:
    """Remove temporaries of atomic writes that a kill interrupted (``.last.ckpt.abcd1234.tmp``).

    Call it while holding the run lock: no live process of this run is writing them.
    """
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "samples"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if TMP_RE.match(p.name) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    if removed:
        report(f"ganforge: removed {len(removed)} unfinished temporary file(s) of writes interrupted by a kill "
               f"in {run_dir} ({', '.join(sorted(p.name for p in removed)[:3])}{', ...' if len(removed) > 3 else ''}).")
    return removed

