"""From a resolved config to a trained GAN: build components, the trainer, the run directory."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

import lightning as L

from ganforge.run import config as config_mod
from ganforge.run import resume as resume_mod
from ganforge.run import rundir
from ganforge.run.launch import RUN_DIR_ENV, Detected, Launch, detect_launch, world_size_hint
from ganforge.loop import fastpaths
from ganforge.run.callbacks import AtomicCheckpointIO, Evaluation, GANCheckpoint, SamplePictures
from ganforge.run.checkpoint import load_checkpoint_file
from ganforge.contract.components import CalibratedObjective, GroupingDiscriminator, NotApplicable, as_pair
from ganforge.loop.data import GANDataModule, InMemoryDataset, fetch_batch, materialize
from ganforge.loop.module import GANModule, restore_objective_state
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import Registry, get_registry


def quiet_lightning() -> None:
    """Lightning's start-up banners (GPU available, tips) drown the few lines that matter."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA generator
    warnings.filterwarnings("ignore", message=".*`weights_only` was not set.*")
    # Our data order is a pure function of the restored iteration counter (ganforge.loop.data), so a
    # mid-epoch resume is exact; Lightning cannot know that and warns.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*is deprecated. Please use.*TreeSpec.*")


# -- run directory --------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A run's ``last.ckpt`` as ``--resume auto`` sees it: its generator step and when it was saved
    (recorded inside the checkpoint; the file's mtime for checkpoints from before that, or copies)."""

    path: Path
    g_steps: int
    saved: float

    @property
    def state(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.saved))
        return f"generator step {self.g_steps}, saved {when}"


def checkpoint_candidates(root: Path, name: str) -> tuple[list[Candidate], list[Path]]:
    """Every run of ``name`` with a ``last.ckpt``, newest first, and the ones that cannot be read."""
    found, unreadable = [], []
    for p in sorted((root / name).glob("*/checkpoints/last.ckpt")):
        if not p.is_file():
            continue
        try:
            section = load_checkpoint_file(p, mmap=True)["ganforge"]
            g_steps = int(section["counters"]["g_steps"])
        except (ConfigError, KeyError, TypeError, ValueError):
            unreadable.append(p)
            continue
        saved = section.get("saved_unix")
        found.append(Candidate(p, g_steps, float(saved) if isinstance(saved, (int, float)) else p.stat().st_mtime))
    found.sort(key=lambda c: (c.saved, c.g_steps), reverse=True)
    return found, unreadable


def latest_checkpoint(root: Path, name: str, announce: bool = False) -> Optional[Path]:
    """The newest readable ``<root>/<name>/*/checkpoints/last.ckpt`` by the save time recorded in it
    (then by generator step); with ``announce``, say which one and what else there was."""
    found, unreadable = checkpoint_candidates(root, name)
    if not found:
        return unreadable[-1] if unreadable else None  # a damaged one is reported by the resume itself
    chosen, base = found[0], root / name
    if announce:
        others = "; ".join(f"{c.path.parent.parent.relative_to(base)} ({c.state})" for c in found[1:4])
        others += " and more" if len(found) > 4 else ""
        n = len(found) - 1
        more = (f" {n} other run{'s have' if n > 1 else ' has'} a checkpoint: {others} (resume one of those with "
                "--resume <its checkpoints/last.ckpt>)." if n else "")
        skipped = (f" Skipped unreadable: {', '.join(str(p) for p in unreadable)}." if unreadable else "")
        print(f"ganforge: --resume auto: took run {chosen.path.parent.parent}, checkpoint {chosen.path.name} "
              f"({chosen.state}).{more}{skipped}", flush=True)
    return chosen.path


def choose_run_dir(cfg: dict[str, Any], resume: Optional[str], launch: Launch) -> tuple[Path, Optional[Path]]:
    """The run directory and the checkpoint to resume from, by the launch's rule.

    Order: the parent's directory (:attr:`Launch.parent_run_dir`, for ranks Lightning spawns); the
    directory the launch fixes (:attr:`Launch.run_dir_name`: a SLURM job's ``slurm_<job id>``, which a
    requeued attempt resumes from its ``last.ckpt``; a torchrun launch's ``torchrun_<run id>``); the
    directory of the checkpoint being resumed; else the next ``version_<n>``, claimed atomically
    (:func:`ganforge.run.rundir.claim_version`: two runs started together never share one), by rank 0
    for all ranks where they start separately (:attr:`Launch.rank0_chooses`).
    """
    root = Path(cfg["root_dir"])
    base = root / cfg["name"]
    ckpt: Optional[Path] = None
    if resume == "auto":
        announce = launch.owner  # once, not per rank
        ckpt = latest_checkpoint(root, cfg["name"], announce=announce)
        if ckpt is None:
            print(f"ganforge: --resume auto: no checkpoint under {base}/*/checkpoints/; starting a new run.")
    elif resume:
        ckpt = Path(resume)
        if not ckpt.is_file():
            raise ConfigError(f"--resume {resume}: no such checkpoint file (relative to {Path.cwd()}). "
                              f"Use --resume auto to take the newest {base}/*/checkpoints/last.ckpt.")
    if launch.parent_run_dir:
        run_dir = Path(launch.parent_run_dir)
    elif launch.run_dir_name:
        run_dir = base / launch.run_dir_name
    elif ckpt is not None and ckpt.parent.name == "checkpoints":
        run_dir = ckpt.parent.parent
    elif launch.rank0_chooses:
        run_dir = _rank0_choice(lambda: rundir.claim_version(base), launch.rank)
    else:
        run_dir = rundir.claim_version(base)
    if ckpt is None and launch.resume_in_place and (run_dir / "checkpoints" / "last.ckpt").is_file():
        ckpt = run_dir / "checkpoints" / "last.ckpt"  # a requeued job picks up where it stopped
    return run_dir, ckpt


def _rank0_choice(claim: Callable[[], Path], rank: int) -> Path:
    """Rank 0's run directory, for every rank of a torchrun launch without a run id.

    torchrun's static rendezvous (no ``--standalone``, no ``--rdzv-id``) sets
    ``TORCHELASTIC_RUN_ID=none``; each rank would then pick the next ``version_<n>`` on its own
    and a rank starting after rank 0 created ``version_0`` would pick ``version_1``. Rank 0
    publishes its choice in torchrun's agent store (the TCP store at ``MASTER_ADDR:MASTER_PORT``
    that the process group rendezvous uses too); the other ranks wait for it. A restarted
    attempt finds the key set and keeps the directory.
    """
    from datetime import timedelta

    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                     timeout=timedelta(minutes=10))
    key = "ganforge/run_dir"
    if rank == 0:
        if store.check([key]):  # a restarted attempt keeps the directory of the first
            return Path(store.get(key).decode())
        candidate = claim()
        chosen = Path(store.compare_set(key, "", str(candidate)).decode())
        if chosen != candidate:
            candidate.rmdir()  # still empty: claimed a moment ago
        return chosen
    return Path(store.get(key).decode())


# -- building -------------------------------------------------------------------------------------------


@dataclass
class Built:
    cfg: dict[str, Any]
    module: GANModule
    datamodule: GANDataModule
    metrics: list[tuple[str, Any]] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)
    metric_sources: list[str] = field(default_factory=list)  # "metrics.list[i] (metric 'x' from plugin ...)"


def build_components(cfg: dict[str, Any], registry: Optional[Registry] = None) -> Built:
    reg = registry or get_registry()
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    dataset = reg.create("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
    if len(dataset) == 0:
        raise ConfigError(f"dataset ({cfg['dataset']['name']}): the dataset is empty (0 samples); check the "
                          "dataset section's parameters (path, split, num_samples).")
    info = dataset.info
    if not info.name:
        info.name = cfg["dataset"]["name"]
    G = reg.create("generator", cfg["generator"], "generator", info=info, seed=cfg["seed"])
    D = reg.create("discriminator", cfg["discriminator"], "discriminator", info=info, seed=cfg["seed"])
    objective = reg.create("objective", cfg["objective"], "objective", info=info)
    fastpaths.check(cfg, objective)  # train.compile with a gradient penalty: refused before training
    module = GANModule(G, D, objective, info, cfg["train"], cfg["optim"], seed=cfg["seed"])
    module.run_config = cfg
    t = cfg["train"]
    total = t["max_steps"]
    if t["max_images"] is not None:
        by_images = -(-t["max_images"] // (t["batch_size"] * module.n_critic))
        total = by_images if total is None else min(total, by_images)
    dm = GANDataModule(dataset, t["batch_size"], module.n_critic, cfg["seed"], t["num_workers"],
                       start=lambda: module.iterations, total_iterations=total, on_device=t["data_on_device"],
                       iterations_per_batch=t["iterations_per_batch"])
    metrics, kept = [], []
    for i, m in enumerate(cfg["metrics"]["list"]):
        try:
            spec = {k: v for k, v in m.items() if k != "id"}  # the id keys the results; the factory never sees it
            metrics.append((config_mod.metric_id(m), reg.create("metric", spec, f"metrics.list[{i}]", info=info)))
            kept.append(m)
        except ConfigError as exc:
            if not isinstance(exc.__cause__, NotApplicable):
                raise
            print(f"ganforge: note: metrics.list[{i}] ({m['name']}) left out: {exc.__cause__}", flush=True)
    cfg["metrics"]["list"] = kept  # config.yaml records the metrics that run
    callbacks = [reg.create("callback", c, f"callbacks[{i}]", info=info) for i, c in enumerate(cfg["callbacks"])]
    sources = [f"metrics.list[{i}] (metric '{config_mod.metric_id(m)}' from {reg.get('metric', m['name']).provider})"
               for i, m in enumerate(cfg["metrics"]["list"])]
    return Built(cfg, module, dm, metrics, callbacks, metric_sources=sources)


def check_batch_groups(discriminator: Any, batch: int, world: int, name: str) -> None:
    """A discriminator that mixes samples in groups (PacGAN, minibatch std) needs each process's
    batch per discriminator step, ``train.batch_size / world``, to be a multiple of its group."""
    if not isinstance(discriminator, GroupingDiscriminator):
        return
    multiple = int(discriminator.batch_multiple)
    if (batch // world) % multiple:
        need = multiple * world
        raise ConfigError(f"train.batch_size={batch}: discriminator '{name}' groups {multiple} samples per decision "
                          f"(discriminator.pack / minibatch_std), so the batch per process ({batch} / {world} = "
                          f"{batch // world}) must be a multiple of {multiple}; use a multiple of {need}, e.g. "
                          f"{max(need, batch - batch % need)}.")


def make_trainer(cfg: dict[str, Any], run_dir: Path, built: Built, loggers: Mapping[str, Any],
                 progress: Optional[bool] = None, launch: Optional[Detected] = None) -> L.Trainer:
    """The Lightning trainer of a run. ``launch`` (from :func:`ganforge.run.launch.detect_launch`) adds
    the launcher's cluster environment and, where the launch can be requeued, the requeue callback."""
    t = cfg["train"]
    metrics_every = cfg["metrics"]["every_n_steps"]
    s = cfg["samples"]
    max_steps = t["max_steps"]
    sample_every = s["every_n_steps"] or metrics_every or (max(1, max_steps // 10) if max_steps else 1000)
    num_samples = s["num_samples"] or (64 if built.module.info.kind == "image" else 1000)
    s["every_n_steps"], s["num_samples"] = sample_every, num_samples  # config.yaml says what ran
    from ganforge.run.stopping import EarlyStop, InterruptStop

    early = EarlyStop()  # how training stopped early, if it did: set by the stop callbacks, read by the others
    checkpoint = GANCheckpoint(run_dir / "checkpoints", t["checkpoint_every_n_steps"], early=early)
    evaluation = Evaluation(built.metrics, metrics_every, cfg["metrics"]["use_ema"], run_dir, cfg["seed"], cfg["name"],
                            sources=built.metric_sources, early=early)
    callbacks: list[Any] = [
        InterruptStop(checkpoint, evaluation, early=early),  # Ctrl-C/SIGTERM: first, so it saves after all others' step
        evaluation,
        SamplePictures(run_dir, sample_every, num_samples, s["snapshots"], cfg["seed"], max_steps,
                       caption=evaluation.caption, early=early),
        *built.callbacks,
    ]
    from ganforge.reporting.loggers import logger_callbacks

    loggers = dict(loggers)  # name -> logger (make_loggers); [] or {} for none
    callbacks += logger_callbacks(loggers)  # e.g. W&B's sample pictures, the loggers' checkpointed state
    # The periodic checkpoint comes after evaluation and pictures of the same step: a kill right
    # after it cannot lose them (a resume starts after that step and would never redo them).
    callbacks.append(checkpoint)
    plugins: list[Any] = [AtomicCheckpointIO()]
    if launch is not None:
        from ganforge.run.launch import EnvironmentLauncher, RequeueLauncher

        if isinstance(launch.launcher, EnvironmentLauncher):
            environment = launch.launcher.cluster_environment(launch.launch)
            if environment is not None:
                plugins.append(environment)
        if launch.launch.can_requeue and isinstance(launch.launcher, RequeueLauncher):
            from ganforge.run.stopping import RequeueStop

            callbacks.append(RequeueStop(checkpoint, launch.launch, launch.launcher.requeue, early=early))
    per_node = launch.launch.tasks_per_node if launch is not None else None
    if per_node and str(cfg["trainer"].get("devices")) not in (str(per_node), "auto", "-1"):
        print(f"ganforge: warning: trainer.devices={cfg['trainer'].get('devices')} but the {launch.launch.kind} launch "
              f"starts {per_node} process{'es' if per_node > 1 else ''} per node; use one process per device, "
              f"trainer.devices={per_node} (see configs/slurm/ganforge.sbatch).")
    if progress is None:
        progress = use_progress_bar()
    if progress:
        from ganforge.run.callbacks import GANProgressBar

        callbacks.append(GANProgressBar())
    else:  # a batch job's log, a redirected stdout: periodic lines instead of a bar nobody sees
        from ganforge.reporting.status import StatusLines

        status = StatusLines(cfg["console"]["status_every_s"], max_steps, t["max_images"],
                             latest_metrics=lambda: evaluation.latest)
        evaluation.listeners.append(status.evaluated)
        callbacks.append(status)
    kwargs = dict(cfg["trainer"])
    kwargs.setdefault("enable_progress_bar", bool(progress))
    world = world_size_hint(kwargs)
    if world > 1 and "strategy" not in kwargs:
        kwargs["strategy"] = cfg["trainer"]["strategy"] = "gan_ddp"  # written back: config.yaml says what ran
    if kwargs.get("strategy") in ("gan_ddp", "gan-ddp"):
        from ganforge.loop.strategy import GANDDPStrategy

        kwargs["strategy"] = GANDDPStrategy()
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            max_epochs=-1,
            logger=list(loggers.values()) or False,
            callbacks=callbacks,
            enable_checkpointing=False,
            default_root_dir=str(run_dir),
            use_distributed_sampler=False,
            log_every_n_steps=1,  # GANModule decides when to log (train.log_every_n_steps, in G steps)
            num_sanity_val_steps=0,
            enable_model_summary=False,
            plugins=plugins,
            **kwargs,
        )
    except (MisconfigurationException, ValueError) as exc:  # values of the right type Lightning refuses
        given = ", ".join(f"trainer.{k}={v!r}" for k, v in cfg["trainer"].items())
        raise ConfigError(f"trainer: lightning.Trainer refused these settings ({given}): {exc}") from None


def use_progress_bar() -> bool:
    """A progress bar only where someone watches: ``$GANFORGE_PROGRESS`` (0/1) decides when set,
    else whether standard output is a terminal (a SLURM job's log is not)."""
    env = os.environ.get("GANFORGE_PROGRESS")
    if env is not None:
        return env != "0"
    return sys.stdout.isatty()


def fit(cfg: dict[str, Any], resume: Optional[str] = None, progress: Optional[bool] = None,
        registry: Optional[Registry] = None) -> dict[str, Any]:
    """Train a GAN from a resolved config. Returns ``{"run_dir", "summary", "module", "trainer"}``."""
    quiet_lightning()
    config_mod.check_hardware(cfg["trainer"])  # trainer.accelerator=gpu on a machine without one
    from ganforge.run.stopping import SIGNALS

    detected = detect_launch(registry or get_registry())  # once: passed on from here
    SIGNALS.rank = detected.launch.rank
    threads = torch.get_num_threads()  # train.cpu_threads is this run's setting: restored at the end
    owner = detected.launch.owner  # not a spawned or non-zero rank
    run_dir, ckpt = choose_run_dir(cfg, resume, detected.launch)
    fresh = not run_dir.exists() or not any(run_dir.iterdir())  # created for this run (a new version_<n>)
    lock = rundir.RunLock(run_dir).acquire() if owner else None  # refused while another process runs it
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # spawned ranks inherit it: one run directory for all
    try:
        if cfg["train"].get("cpu_threads") is not None:
            torch.set_num_threads(cfg["train"]["cpu_threads"])
        fastpaths.keep_host_memory(cfg["train"].get("host_malloc", "keep"))
        if lock is not None and not fresh:
            rundir.remove_orphan_temporaries(run_dir)
        return _fit(cfg, run_dir, ckpt, progress, registry, detected)
    except BaseException:
        if lock is not None and fresh:
            rundir.remove_own_start(run_dir)  # a start that failed before training wrote anything
        raise
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
        if lock is not None:
            lock.release()


def _fit(cfg: dict[str, Any], run_dir: Path, ckpt: Optional[Path], progress: Optional[bool],
         registry: Optional[Registry], detected: Detected) -> dict[str, Any]:
    plan, state = None, None
    if ckpt is not None:  # before anything is built or written: refuse a different experiment, or a no-op
        state = _check_checkpoint(ckpt)
        plan = resume_mod.plan_resume(state, cfg, ckpt, registry)
        if plan.finished:
            print(plan.finished, flush=True)
            summary = run_dir / "summary.json"
            return {"run_dir": run_dir, "summary": json.loads(summary.read_text()) if summary.is_file() else None,
                    "module": None, "trainer": None}
    built = build_components(cfg, registry)
    resumed_step = None
    if state is not None:  # loggers' rows carry the generator step (iterations differ by skipped steps)
        resumed_step = int(state["counters"]["g_steps"])
    from ganforge.reporting.loggers import make_loggers

    module = built.module
    loggers = make_loggers(cfg, run_dir, registry or get_registry(), step=lambda: module.g_steps,
                           resume_states=(state or {}).get("loggers"), resumed_step=resumed_step,
                           launch=detected.launch)
    trainer = make_trainer(cfg, run_dir, built, loggers, progress, launch=detected)
    if plan is not None:  # defaults make_trainer decided (samples, strategy) match the checkpoint's: no change
        now = resume_mod.flatten(cfg)
        plan.changes = {k: v for k, v in plan.changes.items() if now.get(k, "<absent>") != v[0]}
    batch, world = cfg["train"]["batch_size"], trainer.world_size
    if batch % world:
        raise ConfigError(f"train.batch_size={batch} is the global batch and must divide by the {world} processes "
                          f"(trainer.devices x trainer.num_nodes); use a multiple of {world}, e.g. "
                          f"{(batch // world + 1) * world}.")
    check_batch_groups(built.module.discriminator, batch, world, cfg["discriminator"]["name"])
    prepare_objective(built, ckpt, state, run_dir if trainer.is_global_zero else None)
    if trainer.is_global_zero:
        record = resume_mod.record_segment(run_dir, cfg, ckpt, plan, detected.launch)  # config.yaml once; segments.jsonl each start
        evaluation = next(c for c in trainer.callbacks if isinstance(c, Evaluation))
        evaluation.segment = {k: record[k] for k in ("segment", "started", "host")}  # summary.json's segments
        strategy = getattr(trainer.strategy, "strategy_name", type(trainer.strategy).__name__)
        world = f"{trainer.world_size} process{'es' if trainer.world_size > 1 else ''}, strategy {strategy}"
        if ckpt is None:
            print(f"ganforge: run directory {run_dir} ({world})", flush=True)
        else:
            print(f"ganforge: resuming from {ckpt} in {run_dir} ({world})", flush=True)
    start_iterations, t0 = int(state["counters"]["iterations"]) if state is not None else 0, time.perf_counter()
    trainer.fit(built.module, datamodule=built.datamodule, ckpt_path=str(ckpt) if ckpt else None,
                weights_only=True)  # checkpoints are data, never code (AtomicCheckpointIO loads them so anyway)
    evaluation = next(c for c in trainer.callbacks if isinstance(c, Evaluation))
    module = built.module
    if trainer.is_global_zero and not evaluation.early:
        # after fit, so the progress bar has closed: the table is not glued to it
        from ganforge.reporting.status import print_final

        print_final(evaluation.latest, evaluation.metrics, module, run_dir, module.iterations - start_iterations,
                    time.perf_counter() - t0)
    # the summary: the very dict written to summary.json (and given to the loggers), where one was written
    summary = evaluation.written if evaluation.written is not None else evaluation.summary(built.module)
    return {"run_dir": run_dir, "summary": summary, "module": built.module,
            "trainer": trainer}


def _intact_hint(path: Path) -> str:
    """What is true about the run's other checkpoint, for the message about a damaged one."""
    folder = Path(path).parent
    if folder.name != "checkpoints":
        return ""
    others = [p for p in folder.glob("*.ckpt") if p.is_file() and not p.samefile(path)]
    if others:
        return f" The run's other checkpoint {sorted(others)[0]} is a separate file: resume from that one."
    return (" ganforge writes checkpoints atomically, so this one was damaged or replaced after it was written, "
            "and the run has no other checkpoint: start again without --resume.")


def _check_checkpoint(path: Path) -> dict[str, Any]:
    """Fail early and clearly on a file that is not a loadable ganforge checkpoint; returns its
    ``ganforge`` section (counters, RNG states, extra state)."""
    # mmap: only the small 'ganforge' section is actually read; Lightning loads the file for real
    blob = load_checkpoint_file(path, mmap=True, hint=_intact_hint(path))
    if not isinstance(blob, dict) or "ganforge" not in blob:
        raise ConfigError(f"checkpoint '{path}' was not written by ganforge (no 'ganforge' section).")
    # the loggers' own state (ganforge.reporting.loggers.LoggerStates) rides along for make_loggers,
    # the objective's calibrated state (constrained GANs) for prepare_objective
    return {**blob["ganforge"], "loggers": blob.get("loggers") or {}, "objective": blob.get("objective")}


# -- calibrated objectives (constrained GANs) -------------------------------------------------------------

CONSTRAINTS_FILE = "constraints.json"


def calibration_data(dataset: Any, num: Optional[int], seed: int,
                     chunk: int = 4096) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The training samples a :class:`CalibratedObjective` is measured on, on the CPU: all of them
    (``num`` None or not smaller than the dataset), else the first ``num`` of a permutation seeded by
    ``seed``. A pure function of (data, num, seed): every rank gets the same, with no collective."""
    n = len(dataset)
    if num is None or num >= n:
        x, y = materialize(dataset)
    else:
        g = torch.Generator()
        g.manual_seed((seed * 1_000_003 + 424_242) % (2**63 - 1))
        idx = torch.randperm(n, generator=g)[:num]
        if isinstance(dataset, InMemoryDataset):
            x, y = dataset.tensors()
            x, y = x[idx.to(x.device)], (None if y is None else y[idx.to(y.device)])
        else:
            parts = [as_pair(fetch_batch(dataset, idx[i:i + chunk].tolist())) for i in range(0, num, chunk)]
            x = torch.cat([p[0] for p in parts])
            y = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
    return x.cpu(), (None if y is None else y.cpu())


def prepare_objective(built: Built, ckpt: Optional[Path], state: Optional[dict[str, Any]],
                      run_dir: Optional[Path]) -> None:
    """A :class:`CalibratedObjective` is calibrated once, at the start of a fresh fit (every rank, the same
    data), or given back its state from the checkpoint on resume (never calibrated again); rank 0
    (``run_dir`` given) writes the state to ``constraints.json`` for people to read."""
    objective = built.module.objective
    if not isinstance(objective, CalibratedObjective):
        return
    if ckpt is None:
        if objective.needs_calibration():
            cfg = built.cfg
            x, y = calibration_data(built.datamodule.dataset, objective.calibration_samples, cfg["seed"])
            with torch.no_grad():
                try:
                    objective.calibrate(x, y)
                except ValueError as exc:
                    raise ConfigError(f"objective ({cfg['objective']['name']}) on dataset "
                                      f"'{cfg['dataset']['name']}': {exc}") from None
    else:
        restore_objective_state(objective, state or {}, ckpt)
    if run_dir is not None:
        from ganforge.io import atomic_write_text, jsonable

        record = {"objective": built.cfg["objective"]["name"], **jsonable(objective.state_dict()),
                  "protocol": jsonable(objective.protocol())}
        atomic_write_text(run_dir / CONSTRAINTS_FILE, json.dumps(record, indent=2, allow_nan=True) + "\n")
