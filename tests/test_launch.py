"""Launchers: the launch is detected once from the environment (local, torchrun, SLURM, a third party's
scheduler), in a documented order, and what it says decides the run directory, resume in place and requeue."""

from __future__ import annotations

import json
import signal
import types
from pathlib import Path

import pytest

from conftest import TINY
from ganforge import Launch, hookimpl
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge.run import rundir
from ganforge.run.config import load_config
from ganforge.run.launch import detect_launch, requested_devices, world_size_hint
from ganforge.run.runner import choose_run_dir, fit

# -- detection of the first-party launchers ----------------------------------------------------------------

SLURM_BATCH = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train.sh", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
               "SLURM_NTASKS_PER_NODE": "2"}
UUID = "1f0e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"


@pytest.mark.parametrize("env, expected", [
    ({}, dict(kind="local", rank=0, run_dir_name=None, requeue_signal=None, owner=True)),
    # a rank Lightning started by running the command again: not the owner, takes the parent's directory
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2", "GANFORGE_RUN_DIR": "/r/x/version_3"},
     dict(kind="local", rank=1, parent_run_dir="/r/x/version_3", owner=False)),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, dict(kind="local", owner=False)),  # node 1's first rank is not rank 0
    ({"TORCHELASTIC_RUN_ID": UUID, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"},
     dict(kind="torchrun", job_id=UUID, rank=1, world_size=2, run_dir_name=f"torchrun_{UUID}",
          logger_run_id=f"torchrun-{UUID}", tasks_per_node=2, rank0_chooses=False, requeue_signal=None)),
    # static rendezvous: no run id; rank 0 claims version_<n> for all
    ({"TORCHELASTIC_RUN_ID": "none", "RANK": "0", "WORLD_SIZE": "2"},
     dict(kind="torchrun", job_id=None, run_dir_name=None, rank0_chooses=True, owner=True)),
    ({"TORCHELASTIC_RUN_ID": "none", "RANK": "0", "WORLD_SIZE": "1"}, dict(kind="torchrun", rank0_chooses=False)),
    (SLURM_BATCH, dict(kind="slurm", job_id="4242", rank=1, world_size=2, run_dir_name="slurm_4242",
                       logger_run_id="slurm-4242", tasks_per_node=2, requeue_signal=int(signal.SIGUSR1),
                       resume_in_place=True, owner=False)),
    # the batch script itself, without srun: the same directory, but no rank takes part in a requeue
    ({"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "train.sh"},
     dict(kind="slurm", run_dir_name="slurm_7", requeue_signal=None, tasks_per_node=None)),
    # an interactive allocation is no batch job: a plain run (Lightning's rule)
    ({**SLURM_BATCH, "SLURM_JOB_NAME": "interactive", "SLURM_PROCID": "0"}, dict(kind="local", run_dir_name=None)),
    # torchrun inside a SLURM job: the scheduler is the more specific launcher; torchrun's RANK is the rank
    ({**SLURM_BATCH, "TORCHELASTIC_RUN_ID": UUID, "RANK": "3", "WORLD_SIZE": "4"},
     dict(kind="slurm", rank=3, world_size=4, run_dir_name="slurm_4242")),
])
def test_each_first_party_launch_is_detected_from_its_environment(registry, env, expected):
    launch = detect_launch(registry, env).launch
    got = {k: getattr(launch, k) for k in expected}
    assert got == expected


def test_a_launch_is_frozen_and_detection_reads_only_the_given_environment(registry, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    assert detect_launch(registry, {}).launch.kind == "local"
    launch = detect_launch(registry).launch  # default: this process's environment
    assert launch.kind == "slurm" and launch.job_id == "99"
    with pytest.raises(Exception):
        launch.rank = 3  # frozen: nobody changes how the process was started


# -- the order ---------------------------------------------------------------------------------------------


def _registry_with(*launchers):
    """The installed plugins plus ``launchers`` ((name, factory) pairs) registered in process."""
    mod = types.ModuleType("test_launchers")

    @hookimpl
    def ganforge_register_launchers(register):
        for name, factory in launchers:
            register(name, factory)

    mod.ganforge_register_launchers = ganforge_register_launchers
    return load_registry(extra=[("test-launchers", mod)], warn=False)


def _always(kind: str, priority: int, **fields):
    class Always:
        def detect(self, env):
            return Launch(kind=kind, **fields)

    Always.priority = priority
    return Always


def test_detection_order_is_priority_then_name():
    from ganforge.run.launch import PROCESS_LAUNCHER, SCHEDULER

    # two schedulers that both match: the name decides, whatever the registration order
    reg = _registry_with(("zeta", _always("zeta", SCHEDULER)), ("alpha", _always("alpha", SCHEDULER)))
    assert detect_launch(reg, SLURM_BATCH).launch.kind == "alpha"  # alpha < slurm < zeta
    # a process launcher never wins over a matching scheduler, and beats local
    reg = _registry_with(("mpi", _always("mpi", PROCESS_LAUNCHER)))
    assert detect_launch(reg, SLURM_BATCH).launch.kind == "slurm"
    assert detect_launch(reg, {}).launch.kind == "mpi"


# -- bad launchers and bad values --------------------------------------------------------------------------


class _NoPriority:
    def detect(self, env):
        return None


class _Raises:
    priority = 1000

    def detect(self, env):
        raise KeyError("PBS_NODEFILE")


class _NotALaunch:
    priority = 1000

    def detect(self, env):
        return {"kind": "bad"}


@pytest.mark.parametrize("factory, message", [
    (_always("other", 1000), r"launcher 'bad' \(from plugin 'test-launchers'.*kind='other'.*registered under, 'bad'"),
    (_always("bad", 1000, rank=-1), r"rank=-1: expected an int >= 0"),
    (_always("bad", 1000, rank=2, world_size=2), r"world_size=2: expected None or an int > rank \(2\)"),
    (_always("bad", 1000, run_dir_name="../escape"), r"run_dir_name='../escape': expected '<kind>_<job id>'.*'bad_1234'"),
    (_always("bad", 1000, run_dir_name="version_3"), r"run_dir_name='version_3'"),
    (_always("bad", 1000, run_dir_name="a/b_1"), r"run_dir_name='a/b_1'"),
    (_always("bad", 1000, requeue_signal=int(signal.SIGUSR1)), r"requeue_signal=10: the launcher has no requeue\(launch\)"),
    (_always("bad", 1000, requeue_signal=999), r"requeue_signal=999: expected a signal number"),
    (_always("bad", 1000, tasks_per_node=0), r"tasks_per_node=0: expected None or an int >= 1"),
    (_always("bad", 1000, rank0_chooses=True, run_dir_name="bad_1"), r"rank0_chooses=True"),
    (_NoPriority, r"launcher 'bad' .* is not a ganforge.Launcher: it needs `priority: int` \(got None\)"
                  r".*GANFORGE_DISABLE_PLUGINS=test-launchers"),
    (_Raises, r"launcher 'bad' .* failed to read the environment: 'PBS_NODEFILE'.*GANFORGE_DISABLE_PLUGINS=test-launchers"),
    (_NotALaunch, r"detect\(\) must return a ganforge.Launch or None, got dict"),
])
def test_a_broken_launcher_is_one_line_naming_it_the_value_and_the_fix(factory, message):
    reg = _registry_with(("bad", factory))
    with pytest.raises(ConfigError, match=message) as exc:
        detect_launch(reg, {})
    assert "\n" not in str(exc.value)


def test_no_launcher_at_all_says_which_plugin_is_missing():
    from ganforge.registry.registry import Registry

    with pytest.raises(ConfigError, match=r"no launcher recognised.*launchers: none.*'launchers' plugin is not "
                                          r"disabled \(GANFORGE_DISABLE_PLUGINS\)"):
        detect_launch(Registry(), {})


# -- trainer.devices: one reading ------------------------------------------------------------------------


@pytest.mark.parametrize("devices, parsed, world", [
    (2, 2, 2), ("2", 2, 2), (" 3 ", 3, 3), ("0,1", [0, 1], 2), ("1,", [1], 1), ([0, 2, 3], [0, 2, 3], 3),
    ((1, 2), [1, 2], 2), ("auto", "auto", 1), ("0,x", [0, "x"], 2),
])
def test_trainer_devices_are_read_one_way(devices, parsed, world):
    assert requested_devices(devices) == parsed
    assert world_size_hint({"devices": devices}) == world
    assert world_size_hint({"devices": devices, "num_nodes": 2}) == 2 * world


def test_config_validation_uses_the_same_reading(registry):
    with pytest.raises(ConfigError, match=r"trainer.devices: must be >= 1, -1 \(all\) or 'auto', got ','"):
        load_config(None, ["trainer.devices=,"], registry)
    assert load_config(None, ["trainer.devices=-1"], registry)["trainer"]["devices"] == -1


# -- the run directory rule --------------------------------------------------------------------------------


def test_run_directory_follows_the_launch(tmp_path, registry):
    cfg = {"root_dir": str(tmp_path), "name": "x"}
    slurm = detect_launch(registry, SLURM_BATCH).launch
    assert choose_run_dir(cfg, None, slurm) == (tmp_path / "x" / "slurm_4242", None)
    last = tmp_path / "x" / "slurm_4242" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert choose_run_dir(cfg, None, slurm) == (last.parent.parent, last)  # the requeued attempt resumes
    local = detect_launch(registry, {}).launch
    assert choose_run_dir(cfg, None, local) == (tmp_path / "x" / "version_0", None)
    child = detect_launch(registry, {"LOCAL_RANK": "1", "GANFORGE_RUN_DIR": str(tmp_path / "p")}).launch
    assert choose_run_dir(cfg, None, child) == (tmp_path / "p", None)


def test_claiming_a_version_that_others_keep_taking_says_what_to_do(tmp_path):
    for n in (0, 1):
        (tmp_path / "x" / f"version_{n}").mkdir(parents=True)
    (tmp_path / "x" / "version_0" / "keep").write_text("")  # not a leftover: not swept
    (tmp_path / "x" / "version_1" / "keep").write_text("")
    import unittest.mock as mock

    with mock.patch.object(rundir, "_max_version", return_value=-1), \
            pytest.raises(ConfigError, match=r"version_0 to version_1 were all taken.*name=<new name>"):
        rundir.claim_version(tmp_path / "x", tries=2)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"run directory .*file/x: cannot create it .*set root_dir="):
        rundir.claim_version(tmp_path / "file" / "x")


def test_signal_state_takes_its_rank_from_the_launch_not_the_environment(monkeypatch):
    from ganforge.run.stopping import SignalState

    monkeypatch.setenv("LOCAL_RANK", "1")  # used to make rank 1 of a plain run (rundir said 0)
    assert SignalState().rank == 0


# -- a third-party scheduler is one class ------------------------------------------------------------------

PBS = {
    "ganforge_pbs": """
        import os
        import signal
        from pathlib import Path

        import lightning as L
        from ganforge import SCHEDULER, Launch, hookimpl

        GANFORGE_PLUGIN_API = 2

        class PBSLauncher:
            '''PBS Pro / Torque: PBS_JOBID names the job; SIGUSR2 asks to checkpoint and rerun it.'''

            priority = SCHEDULER

            def detect(self, env):
                job = env.get("PBS_JOBID")
                if not job:
                    return None
                return Launch(kind="pbs", job_id=job, rank=int(env.get("PBS_TASKNUM", "1")) - 1,
                              run_dir_name=f"pbs_{job}", logger_run_id=f"pbs-{job}",
                              requeue_signal=int(signal.SIGUSR2), resume_in_place=True)

            def requeue(self, launch):
                with open(os.environ["PBS_TEST_LOG"], "a") as f:  # stands in for `qrerun <job>`
                    f.write(f"qrerun {launch.job_id}\\n")


        class SignalAt(L.Callback):
            def __init__(self, step):
                self.step = step

            def on_train_batch_end(self, trainer, pl_module, *args):
                if pl_module.g_steps == self.step:
                    os.kill(os.getpid(), signal.SIGUSR2)


        def signal_at(step: int = 0) -> SignalAt:
            return SignalAt(step)


        @hookimpl
        def ganforge_register_launchers(register):
            register("pbs", PBSLauncher)


        @hookimpl
        def ganforge_register_callbacks(register):
            register("signal-at", signal_at, description="sends SIGUSR2 to itself at a generator step (tests)")
    """,
}


def test_a_third_party_scheduler_sets_the_run_directory_requeues_and_resumes(fake_plugins, tmp_path, monkeypatch,
                                                                            capsys):
    fake_plugins("ganforge-pbs", PBS, {"pbs": "ganforge_pbs"})
    reg = load_registry(warn=False)
    assert "pbs" in reg.names("launcher")
    for var in ("GANFORGE_RUN_DIR", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    log = tmp_path / "qrerun.log"
    monkeypatch.setenv("PBS_JOBID", "77.pbs-server")
    monkeypatch.setenv("PBS_TEST_LOG", str(log))
    before = signal.getsignal(signal.SIGUSR2)
    overrides = [*TINY, f"root_dir={tmp_path / 'runs'}", "metrics.list=[]", "train.checkpoint_every_n_steps=1000",
                 "callbacks=[{name: signal-at, step: 6}]"]
    out = fit(load_config(None, overrides, reg), progress=False, registry=reg)
    run = tmp_path / "runs" / "ring8" / "pbs_77.pbs-server"
    assert out["run_dir"] == run
    assert "PBS signal: saved" in capsys.readouterr().out
    assert log.read_text() == "qrerun 77.pbs-server\n"
    import torch

    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["ganforge"]
    assert state["counters"]["g_steps"] == 6
    assert not (run / "summary.json").exists()  # the rerun evaluates at its own end
    assert signal.getsignal(signal.SIGUSR2) == before  # the handler is put back after fit
    # the rerun of the job (the same command): same directory, resumes in place after step 6, finishes
    out = fit(load_config(None, overrides, reg), progress=False, registry=reg)
    assert out["run_dir"] == run and out["summary"]["counters"]["g_steps"] == 20
    segments = [json.loads(line) for line in (run / "segments.jsonl").read_text().splitlines()]
    assert [(s["launcher"], s["job_id"], s["start"]["g_steps"]) for s in segments] == [
        ("pbs", "77.pbs-server", 0), ("pbs", "77.pbs-server", 6)]
    # without PBS_JOBID the same installation is a plain local run
    monkeypatch.delenv("PBS_JOBID")
    assert detect_launch(reg).launch.kind == "local"
