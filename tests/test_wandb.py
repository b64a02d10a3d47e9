"""Weights & Biases without network: real offline runs through the engine, read back with wandb's own
reader (``wandb leet inspect``, wandb-core's transaction-log reader), resume, SLURM run ids, mode choice.

Everything wandb touches lives in tmp_path (HOME, WANDB_DIR/CACHE/CONFIG/DATA dirs, netrc); no API key
is set, so nothing ever tries to reach a server.
"""

from __future__ import annotations

import json
import math
import re
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

wandb = pytest.importorskip("wandb")

from ganforge.run import config as config_mod  # noqa: E402
from ganforge.run import runner as run_mod  # noqa: E402
from ganforge import LoggerRun  # noqa: E402
from ganforge_plugins.loggers import wandb_logger as wl  # noqa: E402

TINY = [
    "generator.width=32", "generator.depth=2", "discriminator.width=32", "discriminator.depth=2",
    "dataset.num_samples=2000", "train.batch_size=64", "train.log_every_n_steps=5",
    "train.checkpoint_every_n_steps=10", "metrics.every_n_steps=10", "metrics.list.0.num_samples=500",
    "samples.every_n_steps=10", "samples.num_samples=200", "logger=[csv, wandb]",
]
WANDB_ENV = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_SILENT",
             "WANDB_QUIET", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_ENTITY",
             "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "TORCHELASTIC_RUN_ID",
             "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """A private, key-less wandb environment; the wandb singleton is rebuilt from it."""
    for var in WANDB_ENV:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    for var, sub in [("HOME", "home"), ("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")]:
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))  # absent file: no key
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("GANFORGE_PROGRESS", "0")
    wandb.teardown()  # settings are read once per process: start from this environment
    yield tmp_path
    wandb.teardown()


def load(registry, tmp: Path, *extra: str) -> dict[str, Any]:
    return config_mod.load_config(None, [*TINY, f"root_dir={tmp / 'runs'}", *extra], registry)


def wandb_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """wandb's own command line (same interpreter, this test's environment)."""
    return subprocess.run([sys.executable, "-m", "wandb", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WANDB_MODE": "offline"})


def read_records(run_path: Path) -> list[dict[str, Any]]:
    """Every record of an offline run's ``run-*.wandb`` file, via ``wandb leet inspect --json``."""
    out = wandb_cli("leet", "inspect", "--json", str(run_path))
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def read_state(run_path: Path) -> dict[str, Any]:
    """The run's final state (config, summary, exit code) via ``wandb leet inspect --summary --json``."""
    out = wandb_cli("leet", "inspect", "--summary", "--json", str(run_path))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*"))


def history(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return [(int(r["history"]["step"].get("num", 0)), r["history"]["item"]) for r in records
            if r["type"] == "history"]


def image_steps(rows: list[tuple[int, dict[str, Any]]], key: str) -> list[int]:
    return [step for step, item in rows if item.get(f"{key}._type") == "image-file"]


# -- end to end -------------------------------------------------------------------------------------------


def test_offline_run_logs_everything(wandb_home, registry, capfd) -> None:
    cfg = load(registry, wandb_home, "train.max_steps=20")
    out = run_mod.fit(cfg, progress=False)
    run_dir = out["run_dir"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    run_id = ckpt["loggers"]["wandb"][wl.RUN_ID_KEY]  # the logger's own state, not the module's
    assert "extra" not in ckpt["ganforge"]  # no side channel in the module's state any more

    # One line says W&B is offline and how to upload; wandb itself stays silent.
    printed = capfd.readouterr().out
    lines = [ln for ln in printed.splitlines() if "W&B is offline" in ln]
    assert lines == [wl.offline_line("no W&B API key found (WANDB_API_KEY, ~/.netrc)", run_id, run_dir)]
    assert f"upload it later with: wandb sync {run_dir / 'wandb'}" in lines[0]
    assert not [ln for ln in printed.splitlines() if ln.startswith("wandb:")]

    # W&B's folder is in the run directory; one offline run with the persisted id.
    (seg,) = offline_runs(run_dir)
    assert seg.name.endswith(f"-{run_id}") and (seg / f"run-{run_id}.wandb").is_file()

    records = read_records(seg)
    rows = history(records)
    steps = [s for s, _ in rows]
    assert steps == sorted(set(steps)), "W&B steps must increase"
    assert all(item["g_steps"] == s for s, item in rows), "the W&B step is the generator step"
    keys = set().union(*(item for _, item in rows))
    assert {"d_loss", "g_loss", "g_steps", "images_seen"} <= keys
    coverage = {k for k in keys if k.startswith("metrics/mode-coverage/")}
    assert {"metrics/mode-coverage/modes", "metrics/mode-coverage/high_quality",
            "metrics/mode-coverage/kl_uniform"} <= coverage
    assert [s for s, item in rows if "metrics/mode-coverage/modes" in item] == [10, 20]
    assert [s for s, item in rows if "d_loss" in item] == [5, 10, 15, 20]  # no stale replays
    # Sample pictures as images, at the steps SamplePictures wrote them; the files went along.
    assert image_steps(rows, "samples/progress") == [0, 10, 20]
    assert image_steps(rows, "samples/step") == [0, 10, 20]
    media = [f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]]
    assert any(p.startswith("media/images/samples/progress") for p in media)
    assert list((seg / "files" / "media" / "images" / "samples").glob("progress_*.png"))

    state = read_state(seg)
    assert state["run_id"] == run_id and state["exit_code"] == 0 and state["project"] == "ganforge"
    # The resolved config is the run config (plus the metric protocols added at the end).
    config = state["config"]
    assert {k: config[k] for k in cfg} == json.loads(json.dumps(cfg))
    # The summary holds the final values of summary.json, the counters and the protocols.
    summary_json = json.loads((run_dir / "summary.json").read_text())
    final = summary_json["metrics"]["mode-coverage"]
    summary = state["summary"]
    for k, v in final["values"].items():
        got = summary[f"metrics/mode-coverage/{k}"]
        if v is None:  # summary.json writes a non-finite value as null and names it in "non_finite"
            assert f"metrics.mode-coverage.values.{k}" in summary_json["non_finite"], k
            assert got is None or got == "NaN" or (isinstance(got, float) and math.isnan(got)), k
        else:
            assert got == pytest.approx(v), k
    assert summary["final/g_steps"] == 20 and summary["final/images_seen"] == 20 * 64
    assert summary["protocols"]["mode-coverage"]["protocol"] == final["protocol"]
    assert config["metric_protocols"]["mode-coverage"]["protocol"] == final["protocol"]


def test_resume_continues_the_same_wandb_run(wandb_home, registry, capfd) -> None:
    first = run_mod.fit(load(registry, wandb_home, "train.max_steps=20"), progress=False)
    run_dir = first["run_dir"]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    run_id = saved_run_id(ckpt)
    second = run_mod.fit(load(registry, wandb_home, "train.max_steps=30"), resume=str(ckpt), progress=False)
    assert second["run_dir"] == run_dir
    assert saved_run_id(ckpt) == run_id
    printed = capfd.readouterr().out
    assert printed.count(f"Run {run_id} is saved under {run_dir / 'wandb'}") == 2

    # wandb 0.31 offline cannot reopen a run: the resumed segment is a second offline run directory
    # with the same run id, which `wandb sync <run_dir>/wandb` uploads after the first one.
    segments = offline_runs(run_dir)
    # (wandb appends "-1" to a directory name that already exists: two segments in the same second)
    assert len(segments) == 2 and all(re.search(rf"-{run_id}(-\d+)?$", s.name) for s in segments)
    records = {seg: read_records(seg) for seg in segments}
    runs = {seg: next(r["run"] for r in recs if r["type"] == "run") for seg, recs in records.items()}
    assert all(run["run_id"] == run_id and run.get("resume") is True for run in runs.values())
    older, newer = sorted(segments, key=lambda seg: runs[seg]["start_time"])
    first_rows, second_rows = history(records[older]), history(records[newer])
    assert [s for s, _ in first_rows][-1] == 20
    # The resumed segment continues the step axis after the checkpoint; its pictures are not re-sent.
    assert [s for s, _ in second_rows] == [25, 30]
    assert image_steps(second_rows, "samples/progress") == [30]
    assert read_state(newer)["summary"]["final/g_steps"] == 30

    dry = wandb_cli("sync", "--dry-run", str(run_dir / "wandb"))
    assert dry.returncode == 0, dry.stderr
    assert "Would sync 2 run(s)" in dry.stdout + dry.stderr


# -- run ids -----------------------------------------------------------------------------------------------


def saved_run_id(ckpt: Path) -> str:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["loggers"]["wandb"][wl.RUN_ID_KEY]


def make(cfg: dict[str, Any], run_dir: Path, resume_state: Any = None) -> Any:
    """The wandb logger as the engine builds it (factory + injected LoggerRun, launch detected from the env)."""
    from ganforge.registry.registry import get_registry
    from ganforge.run.launch import detect_launch

    spec = {k: v for k, v in cfg["logger"][1].items() if k != "name"}
    launch = detect_launch(get_registry()).launch
    run = LoggerRun(run_dir=run_dir, name=cfg["name"], config=cfg, resume_state=resume_state, launch=launch)
    return wl.wandb_logger(run, **spec)


def test_slurm_job_id_gives_a_stable_run_id(wandb_home, registry, monkeypatch) -> None:
    from ganforge.run.launch import detect_launch

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    cfg = load(registry, wandb_home, "train.max_steps=5")
    # A fresh job and its requeue (no checkpoint yet) get the same id, and it goes into checkpoints.
    ids = set()
    for _ in range(2):
        logger = make(cfg, wandb_home / "r")
        ids.add(logger.version)
        assert logger.state_dict() == {wl.RUN_ID_KEY: logger.version}
    assert ids == {"ring8-slurm-4242"}
    # A checkpoint's id wins (a new job resuming another job's checkpoint continues that W&B run).
    assert make(cfg, wandb_home / "r", resume_state={wl.RUN_ID_KEY: "abc123"}).version == "abc123"
    # Interactive allocations are not batch jobs: a random id, like choose_run_dir's version_<n>.
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")
    assert make(cfg, wandb_home / "r").version != "ring8-slurm-4242"
    # Reserved characters never reach W&B; the id stays within 64 characters.
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    long = wl.launch_run_id("my run/with:odd#chars" * 5, detect_launch(registry).launch)
    assert long.endswith("-slurm-4242") and len(long) <= 64 and not set(":;,#?/' ") & set(long)


def test_slurm_run_through_the_engine(wandb_home, registry, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    out = run_mod.fit(load(registry, wandb_home, "train.max_steps=5"), progress=False)
    assert out["run_dir"].name == "slurm_777"
    (seg,) = offline_runs(out["run_dir"])
    assert seg.name.endswith("-ring8-slurm-777")
    assert read_state(seg)["run_id"] == "ring8-slurm-777"


# -- mode --------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mode_choice_never_waits_on_the_network(wandb_home, monkeypatch) -> None:
    assert wl.decide_mode("offline")[0] == "offline"
    assert wl.decide_mode("disabled")[0] == "disabled"
    assert wl.decide_mode("online")[0] == "online"
    # auto, no key: offline without touching the network.
    mode, reason = wl.decide_mode("auto")
    assert mode == "offline" and "no W&B API key" in reason
    # WANDB_MODE set by the user wins over the probe.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wl.decide_mode("auto")[0] == "disabled"
    monkeypatch.delenv("WANDB_MODE")

    # A key (environment or netrc), but the host does not answer: offline, within the probe timeout.
    port = _closed_port()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    wandb.teardown()
    t0 = time.monotonic()
    mode, reason = wl.decide_mode("auto")
    assert mode == "offline" and f"127.0.0.1:{port} did not answer" in reason
    assert time.monotonic() - t0 < wl.PROBE_TIMEOUT_S + 1
    # A resolver or connect that hangs (a cluster that drops packets) is abandoned after the timeout.
    class Hanging:
        @staticmethod
        def create_connection(*args: Any, **kwargs: Any) -> None:
            time.sleep(30)

    monkeypatch.setattr(wl, "socket", Hanging)
    t0 = time.monotonic()
    assert wl.host_reachable("https://api.wandb.ai") is False
    assert time.monotonic() - t0 < wl.PROBE_TIMEOUT_S + 1
    # A socket layer that fails with something other than OSError (a sandbox's patched socket raises
    # TypeError): unreachable, and no traceback from the probe thread.
    class Broken:
        @staticmethod
        def create_connection(*args: Any, **kwargs: Any) -> None:
            raise TypeError("sockets are disabled here")

    thread_errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    monkeypatch.setattr(wl, "socket", Broken)
    assert wl.host_reachable("https://api.wandb.ai") is False
    assert thread_errors == []
    monkeypatch.setattr(wl, "socket", socket)

    # netrc key and a host that answers: online (decided only; no run is started).
    monkeypatch.delenv("WANDB_API_KEY")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        Path(os.environ["NETRC"]).write_text(f"machine 127.0.0.1:{port}\n  login user\n  password {'k' * 40}\n")
        os.chmod(os.environ["NETRC"], 0o600)
        wandb.teardown()
        assert wl.api_key_source(f"http://127.0.0.1:{port}") == "netrc"
        mode, reason = wl.decide_mode("auto")
        assert mode == "online" and "netrc" in reason


def test_probe_goes_through_the_https_proxy(monkeypatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert wl._probe_target("https://api.wandb.ai") == ("api.wandb.ai", 443)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.cluster:3128")
    assert wl._probe_target("https://api.wandb.ai") == ("proxy.cluster", 3128)
    monkeypatch.setenv("NO_PROXY", ".wandb.ai")
    assert wl._probe_target("https://api.wandb.ai") == ("api.wandb.ai", 443)


def test_disabled_mode_trains_without_files(wandb_home, registry, capfd) -> None:
    cfg = load(registry, wandb_home, "train.max_steps=5", "logger=[csv, {name: wandb, mode: disabled}]")
    out = run_mod.fit(cfg, progress=False)
    assert (out["run_dir"] / "metrics.csv").is_file()
    assert not (out["run_dir"] / "wandb").exists()
    assert "W&B is offline" not in capfd.readouterr().out
