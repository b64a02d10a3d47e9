"""The ``wandb`` logger: Weights & Biases for ganforge runs, safe on clusters without network.

The factory :func:`wandb_logger` returns a :class:`GanforgeWandbLogger` (a Lightning ``WandbLogger``) that

* writes W&B's folder into the run directory (``<run_dir>/wandb/``);
* picks the mode without ever waiting on the network: ``auto`` goes online only when an API key
  is configured *and* the W&B host (or the HTTPS proxy) answers a TCP connect within
  :data:`PROBE_TIMEOUT_S`; otherwise it runs offline and prints one line with the
  ``wandb sync`` command that uploads the run later;
* keeps one W&B run per ganforge run: the run id is the logger's state (:class:`ganforge.StatefulLogger`:
  every checkpoint carries it) and is reused with ``resume="allow"`` when training resumes;
  under SLURM it is derived from the job id, so a requeued job continues the same W&B run even
  before its first checkpoint;
* logs every row at W&B step = ganforge's generator step (``g_steps``), which continues after a
  resume, so offline segments of one run line up when ``wandb sync`` replays them in order;
* logs the resolved config as the run config, the sample pictures as ``wandb.Image`` (as a
  :class:`ganforge.PictureLogger`: the engine hands it each picture it writes) and, at the end, the
  final metrics, counters and metric protocols of the run's summary (:class:`ganforge.SummaryLogger`)
  into the run summary.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional
from urllib.parse import urlsplit

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ganforge import ConfigError, Launch, LoggerRun, hookimpl

RUN_ID_KEY = "run_id"  # in the logger's state_dict (checkpoints)
PROBE_TIMEOUT_S = 2.0
INIT_TIMEOUT_S = 60.0  # wandb.init (online: talks to the server; offline: local only)
FINISH_TIMEOUT_S = 300.0  # online: stop waiting for uploads; the run's .wandb file still has everything
DEFAULT_BASE_URL = "https://api.wandb.ai"  # only if wandb's own settings cannot be read
_ENV_MODES = {"online": "online", "offline": "offline", "dryrun": "offline", "disabled": "disabled"}


# -- mode -----------------------------------------------------------------------------------------------


def _base_url() -> str:
    """The W&B server URL as wandb itself resolves it (``WANDB_BASE_URL``, settings files), offline."""
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.base_url or DEFAULT_BASE_URL)
    except Exception:  # noqa: BLE001
        return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def api_key_source(base_url: str) -> Optional[str]:
    """Where an API key for ``base_url`` comes from, or ``None``; reads only env and files.

    Mirrors wandb 0.31's own lookup order (``wbauth.authenticate._use_system_auth``):
    ``WANDB_API_KEY`` / ``WANDB_IDENTITY_TOKEN_FILE``, the netrc entry for the host
    (``$NETRC`` or ``~/.netrc``), then an ``api_key`` in the wandb settings files.
    """
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "WANDB_IDENTITY_TOKEN_FILE"
    try:
        from wandb.sdk.lib import wbauth

        if wbauth.read_netrc_auth(host=base_url):
            return "netrc"
    except Exception:  # noqa: BLE001 - a malformed key or netrc: not usable
        pass
    try:
        from wandb.sdk import wandb_setup

        if wandb_setup.singleton().settings.api_key:
            return "wandb settings"
    except Exception:  # noqa: BLE001
        pass
    return None


def _probe_target(base_url: str) -> tuple[str, int]:
    """The host and port a connection to ``base_url`` goes to first: the HTTPS proxy if any."""
    parts = urlsplit(base_url)
    host = parts.hostname or "api.wandb.ai"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if parts.scheme == "http":
        proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    bypass = any(h.strip() and (host == h.strip().lstrip(".") or host.endswith("." + h.strip().lstrip(".")))
                 for h in no_proxy.split(",")) or no_proxy.strip() == "*"
    if proxy and not bypass:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return host, parts.port or (80 if parts.scheme == "http" else 443)


def host_reachable(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the W&B host (or proxy) opens within ``timeout`` seconds.

    Name resolution has no timeout of its own, so the whole probe runs in a daemon thread that
    is abandoned after ``timeout``: this never blocks longer than that.
    """
    host, port = _probe_target(base_url)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except Exception:  # noqa: BLE001 - unreachable, whatever the reason (OSError, or a socket layer
            result.append(False)  # patched by a sandbox that raises TypeError): never a traceback from the thread

    t = threading.Thread(target=probe, name="ganforge-wandb-probe", daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def decide_mode(requested: str) -> tuple[str, str]:
    """``(mode, reason)`` for a configured mode ``auto|online|offline|disabled``.

    Only ``auto`` looks at the environment: ``WANDB_MODE`` wins when set, else online needs an
    API key and a host that answers within :data:`PROBE_TIMEOUT_S`.
    """
    if requested != "auto":
        return requested, f"logger mode: {requested}"
    env_mode = _ENV_MODES.get(os.environ.get("WANDB_MODE", "").strip().lower())
    if env_mode:
        return env_mode, f"WANDB_MODE={os.environ['WANDB_MODE']}"
    base = _base_url()
    source = api_key_source(base)
    if source is None:
        return "offline", "no W&B API key found (WANDB_API_KEY, ~/.netrc)"
    host, port = _probe_target(base)
    if not host_reachable(base):
        return "offline", f"{host}:{port} did not answer within {PROBE_TIMEOUT_S:g} s"
    return "online", f"API key from {source}, {host}:{port} reachable"


# -- run id ---------------------------------------------------------------------------------------------


def _clean_id(text: str, limit: int = 64) -> str:
    """A W&B run id: no reserved characters (``:;,#?/'``), no spaces, at most ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:limit] or "run"


def launch_run_id(name: str, launch: Optional[Launch]) -> Optional[str]:
    """A run id that survives a requeue/restart of the same job: the run's name and the launch's
    :attr:`ganforge.Launch.logger_run_id` (``slurm-<job id>``, ``torchrun-<run id>``); ``None`` for a
    launch without one (a plain local run, an interactive allocation)."""
    if launch is None or not launch.logger_run_id:
        return None
    return _with_suffix(name, f"-{launch.logger_run_id}")


def _with_suffix(name: str, suffix: str) -> str:
    suffix = "-" + _clean_id(suffix, 48)
    return _clean_id(name, 64 - len(suffix)) + suffix


def choose_run_id(run: LoggerRun) -> str:
    """The checkpoint's run id when resuming, else ``WANDB_RUN_ID`` (a W&B sweep agent sets it for the
    run it waits for), else the scheduler job's, else a new random one."""
    state = run.resume_state or {}
    if state.get(RUN_ID_KEY):
        return str(state[RUN_ID_KEY])
    if os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    derived = launch_run_id(run.name, run.launch)
    if derived:
        return derived
    from wandb.sdk.lib.runid import generate_id

    return generate_id()


# -- the logger -----------------------------------------------------------------------------------------


class GanforgeWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` with ganforge's run id, step axis, pictures and summary.

    * Rows are logged at W&B step ``g_steps`` (the engine's ``step``, :attr:`LoggerRun.step`);
      ``g_steps`` is restored from checkpoints, so a resumed run continues its x-axis.
    * :meth:`log_summary` writes the run's summary into the W&B run summary; :meth:`finalize`
      finishes the W&B run, so the offline file is complete and a later ``fit`` in the same
      process starts cleanly.
    """

    def __init__(self, *, run_dir: Path, mode: str, step: Callable[[], int], requested: str = "auto",
                 **kwargs: Any) -> None:
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.requested = requested
        self._current_step = step
        self._closed = False
        self._owns_run = True
        self._starting_step = 0
        self._dropped = 0
        super().__init__(save_dir=str(self.run_dir), **kwargs)

    # The experiment is created on first use, on rank 0 only (other ranks get a dummy).
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        import wandb

        if self._experiment is None:
            if wandb.run is not None:  # e.g. inside a W&B sweep agent: log into the caller's run
                self._experiment = wandb.run
                self._owns_run = False
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                try:
                    self._experiment = self._init(wandb)
                except Exception as exc:  # noqa: BLE001
                    if not (self.mode == "online" and self.requested == "auto"):
                        raise
                    # auto: a server that answered the probe but failed wandb.init (key, timeout)
                    self.mode = "offline"
                    reason = f"wandb.init online failed ({type(exc).__name__}: {str(exc)[:200]})"
                    print(offline_line(reason, str(self._id), self.run_dir), flush=True)
                    self._experiment = self._init(wandb)
            self._starting_step = int(getattr(self._experiment, "starting_step", 0) or 0)
            run_id = getattr(self._experiment, "id", None)
            if run_id:  # a sweep agent's run has its own id
                self._id = str(run_id)
        return self._experiment

    def state_dict(self) -> dict[str, Any]:
        """The W&B run id, so that a resume continues the same W&B run (:class:`ganforge.StatefulLogger`)."""
        return {RUN_ID_KEY: str(self._id)}

    def _init(self, wandb: Any) -> Any:
        init = {k: v for k, v in self._wandb_init.items() if k != "anonymous"}  # deprecated in wandb
        settings: dict[str, Any] = {"mode": self.mode, "init_timeout": INIT_TIMEOUT_S}
        if self.mode == "online":
            settings["finish_timeout"] = FINISH_TIMEOUT_S
        if not any(os.environ.get(v) for v in ("WANDB_SILENT", "WANDB_QUIET")):
            # Offline, ganforge printed the one line that matters; online, keep the run's URL.
            settings["silent" if self.mode == "offline" else "quiet"] = True
        return wandb.init(settings=wandb.Settings(**settings), **init)

    def _step(self, fallback: Optional[int]) -> int:
        g = self._current_step()
        return int(g if g is not None else (fallback or 0))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if self._closed or self.mode == "disabled":
            return
        g = self._step(step)
        if g < self._starting_step:
            # A requeued job without a checkpoint replays steps the W&B run already has.
            self._dropped += 1
            return
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
        if "g_steps" in row and int(row["g_steps"]) != g:
            # Lightning re-emits the module's last ``self.log`` values on later batches: stale rows.
            return
        if self._prefix:
            row = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in row.items()}
        row.setdefault("g_steps", g)
        self.experiment.log(row, step=g)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """The resolved config is the run config (given to ``wandb.init``); module hparams are not."""

    # -- pictures ---------------------------------------------------------------------------------

    @rank_zero_only
    def log_pictures(self, step: int, pictures: dict[str, Path]) -> None:
        """The sample pictures the engine has just written (:class:`ganforge.PictureLogger`), as
        ``wandb.Image`` at their generator step."""
        if self._closed or self.mode == "disabled" or step < self._starting_step:
            return
        import wandb

        captions = {"samples/progress": f"up to step {step}", "samples/step": f"step {step}"}
        row: dict[str, Any] = {key: wandb.Image(str(path), caption=captions.get(key, f"step {step}"))
                               for key, path in pictures.items() if Path(path).is_file()}
        if row:
            self.experiment.log({**row, "g_steps": step}, step=step)

    # -- end of training --------------------------------------------------------------------------

    @rank_zero_only
    def log_summary(self, summary: dict[str, Any]) -> None:
        """Final metrics, counters and metric protocols (the dict of ``summary.json``) into the run
        summary (:class:`ganforge.SummaryLogger`)."""
        if self._closed or self.mode == "disabled":
            return
        run = self.experiment
        update: dict[str, Any] = {}
        protocols: dict[str, Any] = {}
        for name, entry in (summary.get("metrics") or {}).items():
            for k, v in (entry.get("values") or {}).items():
                update[f"metrics/{name}/{k}"] = v
            protocols[name] = {"protocol": entry.get("protocol"), "generator_used": entry.get("generator_used")}
        for k, v in (summary.get("counters") or {}).items():
            update[f"final/{k}"] = v
        update["protocols"] = protocols
        update["wall_time_s"] = summary.get("wall_time_s")
        update["run_dir"] = str(self.run_dir)
        run.summary.update(update)
        run.config.update({"metric_protocols": protocols}, allow_val_change=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._closed or self._experiment is None:
            return
        if self._dropped:
            print(f"ganforge: W&B: {self._dropped} logging calls before step {self._starting_step} were skipped "
                  "(the W&B run already had them).")
        if self._owns_run and hasattr(self._experiment, "finish"):
            self._experiment.finish(exit_code=0 if status in ("success", "finished") else 1)
            self._experiment = None
        self._closed = True


# -- factory --------------------------------------------------------------------------------------------


def sync_command(run_dir: Path) -> str:
    """The command that uploads every offline segment of this run (in order of start time)."""
    return f"wandb sync {Path(run_dir).absolute() / 'wandb'}"


def offline_line(reason: str, run_id: str, run_dir: Path) -> str:
    """The one line printed when W&B runs offline."""
    where = Path(run_dir).absolute() / "wandb"
    return (f"ganforge: W&B is offline: {reason}. Run {run_id} is saved under {where}; "
            f"upload it later with: {sync_command(run_dir)}")


def wandb_logger(
    run: LoggerRun,
    project: str = "ganforge",
    entity: Optional[str] = None,
    mode: Literal["auto", "online", "offline", "disabled"] = "auto",
    tags: list = [],  # noqa: B006 - validated and copied by the engine
) -> GanforgeWandbLogger:
    """Weights & Biases: online when a key and the server are there, else offline with a ``wandb sync`` line.

    Args:
        project: The W&B project.
        entity: The W&B team or user (``null``: your default entity).
        mode: ``auto`` (``WANDB_MODE`` if set, else online only with an API key and a W&B host that
            answers within 2 s), ``online``, ``offline`` or ``disabled``.
        tags: Tags of the W&B run.
    """
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("logger wandb: the wandb package is not installed (pip install wandb), "
                          "or remove wandb from the logger: section.") from None
    run_dir = Path(run.run_dir)
    if run.rank == 0:
        chosen, reason = decide_mode(mode)
    else:
        chosen, reason = "disabled", "not rank 0"
    run_id = choose_run_id(run)
    if run.rank == 0 and chosen == "offline":
        print(offline_line(reason, run_id, run_dir), flush=True)
    return GanforgeWandbLogger(
        run_dir=run_dir,
        mode=chosen,
        requested=mode,
        step=run.step,
        project=project or "ganforge",
        entity=entity or None,
        tags=[str(t) for t in tags],
        id=run_id,
        name=f"{run.name}/{run_dir.name}",
        group=run.name,
        config=dict(run.config),
    )


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_loggers(register: Callable[..., None]) -> None:
    register("wandb", wandb_logger, description="Weights & Biases (offline without network; `wandb sync` later)")
