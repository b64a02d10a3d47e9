"""Resuming with a config: what may change, what may not, and the record of every segment.

A resumed run must stay one experiment: the checkpoint's config is compared with the requested
one before anything is built or written. Changes to what is trained (networks, data, objective,
optimizers, seed, batch size, EMA, learning-rate schedule, precision, callbacks) are refused with
the differing keys; changes to when training stops, how often it checkpoints, logs, evaluates and
draws, where it runs, and the non-finite recovery knobs are allowed and recorded.

On disk (rank 0): ``config.yaml`` is written once, at the first start, and never rewritten. Every
start appends one line to ``segments.jsonl`` (start counters, time, host, SLURM job, checkpoint,
changed keys ``[old, new]``, the config file in force); a segment that changed keys writes its
effective config to ``config.segment_<k>.yaml``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ganforge.run import config as config_mod
from ganforge.io import atomic_write_text, short_repr
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import Registry

# Keys (or section prefixes) that may differ between the checkpoint's config and a resume's.
SAFE_ON_RESUME = (
    "name", "root_dir",                                   # where the run is filed, not what it is
    "train.max_steps", "train.max_images",               # when to stop (max_steps: unless lr_decay uses it)
    "train.checkpoint_every_n_steps", "train.log_every_n_steps", "train.num_workers",
    "train.on_nonfinite", "train.grad_clip",             # recovery after a non-finite loss (its message says so)
    "optim.generator.lr", "optim.discriminator.lr",      # likewise: "lower the learning rates" and resume
    "metrics", "samples", "logger", "console",           # observation only: never touches G or D
    "trainer.devices", "trainer.num_nodes", "trainer.accelerator", "trainer.strategy",
    "trainer.enable_progress_bar", "train.cpu_threads",  # where it runs: the batch is global, data order fixed
    "train.host_malloc",                                  # how host memory is reused: allocation only
    "train.iterations_per_batch",                        # how Lightning's loop is driven: the same iterations
)
SEGMENTS = "segments.jsonl"
_ABSENT = "<absent>"


def is_safe(key: str, cfg: dict[str, Any]) -> bool:
    if key == "train.max_steps" and cfg["train"].get("lr_decay", "none") != "none":
        return False  # the linear decay ends at max_steps: moving it changes every later learning rate
    return any(key == s or key.startswith(s + ".") for s in SAFE_ON_RESUME)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or ({prefix: {}} if prefix else {})
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out or {prefix: []}
    return {prefix: list(obj) if isinstance(obj, tuple) else obj}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs (``<absent>`` on one side)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
            if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


@dataclass
class ResumePlan:
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    finished: Optional[str] = None  # the "nothing to do" message when the run is already done


def _short(v: Any) -> str:
    return "(absent)" if v == _ABSENT else short_repr(v, 40)


def plan_resume(state: dict[str, Any], cfg: dict[str, Any], ckpt: Path,
                registry: Optional[Registry] = None) -> ResumePlan:
    """Compare a checkpoint (its ``ganforge`` section) with the requested config.

    Raises ConfigError for a refused change or a run already past the requested end; returns
    the allowed changes and, for a run that ended exactly there, the message to print.
    """
    old = state.get("config")
    if not isinstance(old, dict):
        raise ConfigError(f"--resume {ckpt}: the checkpoint holds no run config, so ganforge cannot check that "
                          "the resume continues the same experiment; start a new run without --resume.")
    try:  # fill in keys added to ganforge since the checkpoint was written, with their defaults
        from ganforge.registry.registry import get_registry

        old = config_mod.resolve(json.loads(json.dumps(old)), registry or get_registry(), f"checkpoint {ckpt}")
    except ConfigError:
        pass
    changes = config_changes(old, cfg)
    refused = {k: v for k, v in changes.items() if not is_safe(k, cfg)}
    if refused:
        shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(refused.items())[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        why = (" (train.max_steps moves the end of train.lr_decay=linear)"
               if "train.max_steps" in refused and len(refused) == 1 else "")
        raise ConfigError(f"--resume {ckpt}: the config differs from the checkpoint's in what is trained{why}: "
                          f"{shown}{more}. Nothing was changed. Resume with the checkpoint's values (its config is "
                          f"in the run's config.yaml/segments.jsonl), or start a new run without --resume. "
                          f"Allowed to change on resume: {', '.join(SAFE_ON_RESUME)}.")
    counters = {k: int(v) for k, v in (state.get("counters") or {}).items()}
    plan = ResumePlan(changes=changes, counters=counters)
    t = cfg["train"]
    for key, counter, what in (("max_steps", "g_steps", "generator step"), ("max_images", "images_seen", "images")):
        limit, at = t.get(key), counters.get(counter, 0)
        if limit is None:
            continue
        where = f"{what} {at}" if counter == "g_steps" else f"{at} images seen"
        if at > limit:
            raise ConfigError(f"--resume {ckpt}: the run is already past train.{key}={limit} (it is at {where}). "
                              f"Nothing was changed. To train further set train.{key} above {at}.")
        if at == limit:
            plan.finished = (f"ganforge: {ckpt} has already reached train.{key}={limit} ({where}): nothing to do, "
                             f"nothing changed. To train further set train.{key} above {at}.")
    return plan


def read_segments(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / SEGMENTS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill: the others still count
    return out


def record_segment(run_dir: Path, cfg: dict[str, Any], ckpt: Optional[Path], plan: Optional[ResumePlan],
                   launch: Any = None) -> dict:
    """Write ``config.yaml`` at the first start, ``config.segment_<k>.yaml`` when keys changed, and
    append this segment to ``segments.jsonl``. Rank 0 only."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    segments = read_segments(run_dir)
    first = not (run_dir / "config.yaml").is_file()
    k = len(segments) if segments or first else 1  # a run from before segments.jsonl had segment 0
    changes = plan.changes if plan else {}
    if first:
        atomic_write_text(run_dir / "config.yaml", config_mod.dump(cfg))
        config_file = "config.yaml"
    elif changes:
        config_file = f"config.segment_{k}.yaml"
        atomic_write_text(run_dir / config_file, config_mod.dump(cfg))
    else:
        config_file = segments[-1].get("config", "config.yaml") if segments else "config.yaml"
    record = {
        "segment": k,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "launcher": getattr(launch, "kind", None),  # ganforge.run.launch.Launch: how this segment was started
        "job_id": getattr(launch, "job_id", None),
        "slurm_job_id": launch.job_id if getattr(launch, "kind", None) == "slurm" else None,
        "resumed_from": str(ckpt) if ckpt else None,
        "start": {c: (plan.counters.get(c, 0) if plan else 0) for c in ("g_steps", "images_seen", "iterations")},
        "changes": {key: [a, b] for key, (a, b) in changes.items()},
        "config": config_file,
    }
    line = json.dumps(record, default=str) + "\n"
    fd = os.open(run_dir / SEGMENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: a whole line or nothing useful
        os.fsync(fd)
    finally:
        os.close(fd)
    return record
