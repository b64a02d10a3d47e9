"""How this process was started, detected once: the :class:`Launch` record and the :class:`Launcher` protocol.

A launch decides three things that used to be decided in several places: the run directory
(``runs/<name>/slurm_<job>`` survives a requeue, ``torchrun_<id>`` is shared by ranks that start
on their own, else the next ``version_<n>``), the run id a logger may reuse after a requeue, and
whether the scheduler can requeue the job. :func:`detect_launch` asks the registered launchers
(the ``launcher`` plugin kind, hook ``ganforge_register_launchers``) in a fixed order and returns
the first :class:`Launch` one recognises; the runner passes that record to the run directory
rule, the loggers (``LoggerRun.launch``) and the requeue callback. Nothing else reads the
scheduler's environment variables.

Detection order: higher :attr:`Launcher.priority` first, then the registered name. The
first-party launchers use :data:`SCHEDULER` (``slurm``), :data:`PROCESS_LAUNCHER` (``torchrun``)
and :data:`FALLBACK` (``local``, which always matches): a batch scheduler is more specific than a
process launcher it may start, and a plain run is what is left.
"""

from __future__ import annotations

import dataclasses
import re
import signal
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Optional, Protocol, runtime_checkable

from ganforge.registry.errors import ConfigError

SCHEDULER = 100  # batch schedulers (SLURM, PBS, LSF): they own the job id and requeue
PROCESS_LAUNCHER = 50  # process launchers (torchrun): they may run inside a scheduler's job
FALLBACK = 0  # the plain local run: always matches, tried last

RUN_DIR_ENV = "GANFORGE_RUN_DIR"  # set by rank 0 for the ranks Lightning spawns: one run directory for all
# A launch's run directory under runs/<name>/: "<kind>_<job id>" (version_<n> is the engine's own).
RUN_DIR_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*_[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class Launch:
    """How this process was started. Detected once per ``fit`` (:func:`detect_launch`), then passed on.

    Attributes:
        kind: The name the launcher is registered under (``local``, ``torchrun``, ``slurm``, ...).
        job_id: The scheduler's job id or the launcher's run id; ``None`` for a plain local run.
        rank: This process's global rank as launched (0: the process that owns the run directory).
            For ranks that Lightning starts itself it is the local rank on the first node, and a
            non-zero number on other nodes; the trainer's ``global_rank`` is exact once it exists.
        world_size: Processes as launched; ``None`` when ganforge starts them itself
            (``trainer.devices``), see :func:`world_size_hint`.
        run_dir_name: The run directory under ``<root_dir>/<name>/`` that this launch fixes, the same
            for every rank and every attempt of the job (``slurm_1234``); ``None``: the next free
            ``version_<n>``, claimed by rank 0.
        logger_run_id: A suffix for a logger's run id that survives a requeue (``slurm-1234``); ``None``:
            the logger draws its own.
        tasks_per_node: Processes the launcher starts on each node (``srun``'s tasks, torchrun's
            ``--nproc-per-node``), which ``trainer.devices`` must match; ``None`` when it does not start them.
        requeue_signal: The signal that asks to checkpoint and requeue (SLURM's ``SIGUSR1``); ``None``:
            this launch cannot be requeued. A launcher that sets it must implement
            :class:`RequeueLauncher`.
        resume_in_place: A later attempt of the same job resumes ``<run_dir>/checkpoints/last.ckpt`` by
            itself (a requeued SLURM job).
        rank0_chooses: Ranks start separately with no shared directory name: rank 0 claims
            ``version_<n>`` and the others wait for its choice (torchrun's static rendezvous).
        parent_run_dir: The run directory of the parent process, for ranks that Lightning starts by
            running the same command again (set by the engine from ``$GANFORGE_RUN_DIR``).
    """

    kind: str
    job_id: Optional[str] = None
    rank: int = 0
    world_size: Optional[int] = None
    run_dir_name: Optional[str] = None
    logger_run_id: Optional[str] = None
    tasks_per_node: Optional[int] = None
    requeue_signal: Optional[int] = None
    resume_in_place: bool = False
    rank0_chooses: bool = False
    parent_run_dir: Optional[str] = None

    @property
    def can_requeue(self) -> bool:
        return self.requeue_signal is not None

    @property
    def owner(self) -> bool:
        """Whether this process owns the run directory (claims it, holds its lock, announces)."""
        return self.rank == 0 and self.parent_run_dir is None

    @property
    def signal_name(self) -> Optional[str]:
        return signal.Signals(self.requeue_signal).name if self.requeue_signal is not None else None


@runtime_checkable
class Launcher(Protocol):
    """Recognises one way of starting ganforge. Register a class (or any factory without parameters)
    with ``ganforge_register_launchers``; a new scheduler is one such class.

    Attributes:
        priority: Detection order, higher first (:data:`SCHEDULER`, :data:`PROCESS_LAUNCHER`,
            :data:`FALLBACK`); ties go by registered name.
    """

    priority: int

    def detect(self, env: Mapping[str, str]) -> Optional[Launch]:
        """The launch this environment describes, or ``None`` when it is not this launcher's.

        ``env`` is a copy of ``os.environ``; read nothing else, so that tests can give any environment.
        """
        ...


@runtime_checkable
class RequeueLauncher(Protocol):
    """A launcher whose jobs can be requeued: after every rank has saved ``last.ckpt`` at the same step
    (on :attr:`Launch.requeue_signal`), rank 0 calls :meth:`requeue`."""

    def requeue(self, launch: Launch) -> None:
        """Ask the scheduler to requeue this job; raise ``RuntimeError`` saying why when it refuses."""
        ...


@runtime_checkable
class EnvironmentLauncher(Protocol):
    """A launcher that tells Lightning where the ranks and the main address are."""

    def cluster_environment(self, launch: Launch) -> Any:
        """A ``lightning.fabric.plugins.environments.ClusterEnvironment`` for the trainer, or ``None``."""
        ...


class Detected(NamedTuple):
    launch: Launch
    launcher: Any  # the Launcher that recognised it (for requeue and the cluster environment)


def detect_launch(registry: Any, env: Optional[Mapping[str, str]] = None) -> Detected:
    """Ask the registered launchers, in :attr:`Launcher.priority` order, which one started this process.

    Args:
        registry: The plugin registry (its ``launcher`` components).
        env: The environment to read (default: a copy of ``os.environ``).

    Raises:
        ConfigError: a launcher is broken (naming its plugin), or none recognised the environment.
    """
    import os

    env = dict(os.environ if env is None else env)
    table = registry.components.get("launcher", {})
    built = []
    for name, comp in table.items():
        what = f"launcher '{name}' (from {comp.provider})"
        try:
            launcher = comp.factory()
        except Exception as exc:  # noqa: BLE001 - a plugin's bug: name the plugin
            raise ConfigError(f"{what} could not be created: {exc}. Fix the plugin, or skip it with "
                              f"GANFORGE_DISABLE_PLUGINS={comp.plugin}.") from exc
        priority = getattr(launcher, "priority", None)
        if not isinstance(launcher, Launcher) or not isinstance(priority, int) or isinstance(priority, bool):
            raise ConfigError(f"{what} is not a ganforge.Launcher: it needs `priority: int` (got "
                              f"{priority!r}) and `detect(env) -> Launch | None`. Fix the plugin, or skip it with "
                              f"GANFORGE_DISABLE_PLUGINS={comp.plugin}.")
        built.append((-priority, name, launcher, what, comp.plugin))
    for _, name, launcher, what, plugin in sorted(built, key=lambda t: (t[0], t[1])):
        try:
            launch = launcher.detect(env)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{what} failed to read the environment: {exc}. Fix the plugin, or skip it with "
                              f"GANFORGE_DISABLE_PLUGINS={plugin}.") from exc
        if launch is None:
            continue
        check_launch(launch, name, launcher, what)
        if env.get(RUN_DIR_ENV):
            launch = dataclasses.replace(launch, parent_run_dir=env[RUN_DIR_ENV])
        return Detected(launch, launcher)
    names = ", ".join(sorted(table)) or "none"
    raise ConfigError(f"no launcher recognised how this process was started (launchers: {names}); the first-party "
                      "'local' launcher matches any environment: check that the 'launchers' plugin is not disabled "
                      "(GANFORGE_DISABLE_PLUGINS) or broken (`ganforge plugins`).")


def check_launch(launch: Any, name: str, launcher: Any, what: str) -> None:
    """Refuse a :class:`Launch` that the engine cannot act on, naming the launcher and the field."""

    def bad(field: str, value: Any, fix: str) -> ConfigError:
        return ConfigError(f"{what} detected a launch with {field}={value!r}: {fix}.")

    if not isinstance(launch, Launch):
        raise ConfigError(f"{what}: detect() must return a ganforge.Launch or None, got "
                          f"{type(launch).__name__}.")
    if launch.kind != name:
        raise bad("kind", launch.kind, f"kind must be the name the launcher is registered under, '{name}'")
    if not isinstance(launch.rank, int) or isinstance(launch.rank, bool) or launch.rank < 0:
        raise bad("rank", launch.rank, "expected an int >= 0 (the global rank as launched)")
    if launch.world_size is not None and (not isinstance(launch.world_size, int) or launch.world_size < 1
                                          or launch.rank >= launch.world_size):
        raise bad("world_size", launch.world_size, f"expected None or an int > rank ({launch.rank})")
    if launch.run_dir_name is not None and (not isinstance(launch.run_dir_name, str)
                                            or not RUN_DIR_NAME_RE.match(launch.run_dir_name)
                                            or launch.run_dir_name.startswith("version_")):
        raise bad("run_dir_name", launch.run_dir_name, f"expected '<kind>_<job id>' (e.g. '{name}_1234': lower-case "
                  "kind, then letters, digits, '.', '_', '-'), or None for the next version_<n>")
    if launch.tasks_per_node is not None and (not isinstance(launch.tasks_per_node, int) or launch.tasks_per_node < 1):
        raise bad("tasks_per_node", launch.tasks_per_node, "expected None or an int >= 1")
    if launch.logger_run_id is not None and (not isinstance(launch.logger_run_id, str) or not launch.logger_run_id):
        raise bad("logger_run_id", launch.logger_run_id, "expected a non-empty string or None")
    if launch.requeue_signal is not None:
        try:
            signal.Signals(launch.requeue_signal)
        except (ValueError, TypeError):
            raise bad("requeue_signal", launch.requeue_signal, "expected a signal number (signal.SIGUSR1) or None")
        if not isinstance(launcher, RequeueLauncher):
            raise bad("requeue_signal", launch.requeue_signal, "the launcher has no requeue(launch) method "
                      "(ganforge.RequeueLauncher); add it or set requeue_signal=None")
    if launch.rank0_chooses and launch.run_dir_name is not None:
        raise bad("rank0_chooses", True, "a launch that fixes run_dir_name has nothing for rank 0 to choose; set one")


# -- trainer.devices: one reading for config validation, the hardware check and the world size ------------


def requested_devices(devices: Any) -> Any:
    """``trainer.devices`` as Lightning reads it: a count (``-1``: all), a list of GPU indices, or a string
    Lightning decides on (``"auto"``).

    ``"2"`` is a count, ``"0,1"`` and ``"1,"`` are GPU indices (Lightning's string forms); an index that is
    not a number is kept as text, for the caller's error message.
    """
    if isinstance(devices, str):
        text = devices.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if "," in text:
            return [int(p) if p.lstrip("-").isdigit() else p for p in (s.strip() for s in text.split(",")) if p]
        return text
    if isinstance(devices, tuple):
        return list(devices)
    return devices


def world_size_hint(trainer: Mapping[str, Any]) -> int:
    """How many processes ``trainer.devices`` x ``trainer.num_nodes`` ask for (``-1``: every visible GPU,
    at least one; ``"auto"``: one)."""
    devices = requested_devices(trainer.get("devices", 1))
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices > 0:
            n = devices
        else:
            import torch

            n = max(1, torch.cuda.device_count())
    elif isinstance(devices, list):
        n = len(devices)
    else:
        n = 1
    return n * nodes
