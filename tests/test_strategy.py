"""GANDDPStrategy: several processes train one GAN, agree exactly, and match one process.

Every test here starts real processes (gloo on CPU, NCCL on GPUs) in a subprocess, never in
the pytest process: Lightning's launcher re-executes ``sys.argv`` for the other ranks. Most
runs share ONE launch of ``tests/distributed/gan_worker.py``: its job list (objectives,
``n_critic``, a conditional model, bf16, gradient checks, non-finite steps, Lightning's own DDP)
trains back to back in the same two processes, so the start-up is paid once. The torchrun
tests launch ``torchrun`` itself.

Each launch has a wall-clock limit; on expiry the whole process group is killed and the test
fails with the log's tail (a hang is a failure, not a stuck test run).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed" / "gan_worker.py"
PY = sys.executable

# Small and cheap: MLPs of width 32 on the ring of 8 Gaussians, global batch 32.
SMALL = [
    "generator.width=32", "discriminator.width=32", "generator.depth=2", "discriminator.depth=2",
    "dataset.num_samples=4096", "train.batch_size=32", "metrics.list=[]", "metrics.every_n_steps=0",
    "samples.every_n_steps=1000000", "train.checkpoint_every_n_steps=1000000", "train.log_every_n_steps=50",
    "train.ema_halflife_images=500", "trainer.accelerator=cpu",
]
OBJECTIVES = ["minimax", "non-saturating", "wgan", "wgan-gp", "hinge", "lsgan"]
STEPS = {"wgan": 80, "wgan-gp": 80}  # generator steps; these two take 5 critic steps each
DEFAULT_STEPS = 200
GRAD_CASES = ["non-saturating", "wgan-gp", "conditional"]
LAUNCH_TIMEOUT = 420


# -- launching ----------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh launch: no inherited rank, cluster or run-directory variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "PL_", "GANFORGE_RUN_DIR"))
           and k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_PORT", "MASTER_ADDR")}
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", PYTHONUNBUFFERED="1", GANFORGE_PROGRESS="0")
    env.update(extra)
    return env


def launch(cmd: list[str], log: Path, timeout: float, cwd: Optional[Path] = None,
           env: Optional[dict[str, str]] = None) -> int:
    """Run ``cmd`` in its own process group; kill the group and fail the test on timeout."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd or REPO,
                                env=env or clean_env(), start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launch and every rank it started
            proc.wait()
            pytest.fail(f"{' '.join(cmd[:4])} ... did not finish in {timeout:.0f} s (hang?); log tail:\n{tail(log)}")


def tail(log: Path, n: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else "(no log)"


def run_worker(jobs: list[dict[str, Any]], out: Path, timeout: float = LAUNCH_TIMEOUT,
               cmd_prefix: Optional[list[str]] = None, env: Optional[dict[str, str]] = None) -> tuple[int, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs.json").write_text(json.dumps(jobs, indent=1))
    log = out / "worker.log"
    cmd = (cmd_prefix or [PY]) + [str(WORKER), str(out / "jobs.json"), str(out)]
    return launch(cmd, log, timeout, env=env), log


# -- reading results ----------------------------------------------------------------------------------


class Ranks:
    """The per-rank results and final states of one job."""

    def __init__(self, out: Path, tag: str, world: int = 2) -> None:
        self.tag, self.dir = tag, out / tag
        self.results = [self._json(r) for r in range(world)]
        self.states = [self._state(r) for r in range(world)]

    def _json(self, r: int) -> Optional[dict[str, Any]]:
        p = self.dir / f"result_rank{r}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def _state(self, r: int) -> Optional[dict[str, Any]]:
        p = self.dir / f"rank{r}.pt"
        return torch.load(p, map_location="cpu", weights_only=True) if p.exists() else None

    def assert_ok(self, log: Path) -> None:
        for r, res in enumerate(self.results):
            assert res is not None, f"{self.tag}: rank {r} wrote no result; worker log:\n{tail(log)}"
            assert res["ok"], f"{self.tag}: rank {r} failed: {res.get('traceback')}"
            assert self.states[r] is not None, f"{self.tag}: rank {r} saved no state"


def flat(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists (optimizer states) → {dotted key: leaf}."""
    out: dict[str, Any] = {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list, tuple)):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def assert_identical_across_ranks(job: Ranks) -> None:
    """G, D, the EMA generator, both optimizers and the counters are bit-identical on every rank."""
    s0 = job.states[0]
    for r, s in enumerate(job.states[1:], start=1):
        for part in ("generator", "discriminator", "generator_ema"):
            assert (s0[part] is None) == (s[part] is None), part
            if s0[part] is None:
                continue
            assert s0[part].keys() == s[part].keys()
            for name, t in s0[part].items():
                assert torch.equal(t, s[part][name]), f"{job.tag}: {part}.{name} differs between rank 0 and rank {r}"
        o0, o = flat(s0["optimizers"]), flat(s["optimizers"])
        assert o0.keys() == o.keys()
        for key, v in o0.items():
            same = torch.equal(v, o[key]) if isinstance(v, torch.Tensor) else v == o[key]
            assert same, f"{job.tag}: optimizer state {key} differs between rank 0 and rank {r}"
        assert s["counters"] == s0["counters"], f"{job.tag}: counters differ: {s0['counters']} vs {s['counters']}"
    for part in ("generator", "discriminator", "generator_ema"):
        if s0[part] is not None:
            assert all(torch.isfinite(t).all() for t in s0[part].values() if t.is_floating_point()), part


def assert_real_ddp_run(job: Ranks, g_steps: int, n_critic: int) -> None:
    s0, s1 = job.states
    assert s0["strategy"] == "GANDDPStrategy" and s0["world_size"] == 2
    assert s0["ddp_wrapped"] == ["discriminator", "generator"]
    c = s0["counters"]
    assert c["g_steps"] == g_steps and c["d_steps"] == g_steps * n_critic and c["skipped_steps"] == 0, c
    assert c["images_seen"] == g_steps * n_critic * 32
    # The ranks trained on different shards (not the same batch twice) ...
    assert not torch.equal(s0["first_batch"], s1["first_batch"])
    # ... and the EMA is an average, not a copy of G.
    assert s0["generator_ema"] is not None
    assert any(not torch.equal(s0["generator_ema"][k], v) for k, v in s0["generator"].items())


# -- the shared CPU launch -----------------------------------------------------------------------------


def conditional_data(path: Path) -> str:
    """A small labelled data set for tensor-file: 4 clusters on a circle, labels 0..3."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 1024)
    x = np.stack([np.cos(y * np.pi / 2), np.sin(y * np.pi / 2)], 1) + 0.05 * rng.standard_normal((1024, 2))
    np.savez(path, x=x.astype(np.float32), y=y)
    return f"dataset={{name: tensor-file, path: {path}, labels_key: y}}"


def grad_overrides(case: str, cond: str) -> list[str]:
    base = SMALL + ["train.max_steps=1"]
    if case == "wgan-gp":
        return base + ["objective.name=wgan-gp", "objective.n_critic=2"]
    if case == "conditional":
        return base + [cond, "objective.name=lsgan"]
    return base + [f"objective.name={case}"]


def cpu_jobs(cond: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    # Single-process references first: they run on rank 0 before the first launch.
    for case in GRAD_CASES:
        jobs.append({"tag": f"grad-{case}-1proc", "devices": 1, "global_noise": True, "capture_grads": True,
                     "overrides": grad_overrides(case, cond)})
    for obj in OBJECTIVES:
        jobs.append({"tag": f"obj-{obj}", "overrides": SMALL + [f"objective.name={obj}",
                                                                f"train.max_steps={STEPS.get(obj, DEFAULT_STEPS)}"]})
    # the same run as obj-non-saturating with one iteration per Lightning batch (the obj-* jobs run 16)
    jobs.append({"tag": "one-per-batch", "overrides": SMALL + ["objective.name=non-saturating",
                                                              f"train.max_steps={DEFAULT_STEPS}",
                                                              "train.iterations_per_batch=1"]})
    jobs.append({"tag": "n-critic", "overrides": SMALL + ["objective.name=hinge", "train.n_critic=3",
                                                         "train.max_steps=100"]})
    jobs.append({"tag": "conditional", "overrides": SMALL + [cond, "train.max_steps=150"]})
    jobs.append({"tag": "bf16", "overrides": SMALL + ["trainer.precision=bf16-mixed", "train.max_steps=150"]})
    for case in GRAD_CASES:
        jobs.append({"tag": f"grad-{case}-2proc", "global_noise": True, "capture_grads": True,
                     "overrides": grad_overrides(case, cond)})
    jobs.append({"tag": "nonfinite-skip", "nan_rank": 1, "nan_iteration": 3,
                 "overrides": SMALL + ["train.on_nonfinite=skip", "train.max_steps=10"]})
    # Jobs expected to fail last: each fails on both ranks at the same point.
    jobs.append({"tag": "nonfinite-stop", "nan_rank": 1, "nan_iteration": 3, "expect_error": True,
                 "overrides": SMALL + ["train.on_nonfinite=stop", "train.max_steps=10"]})
    jobs.append({"tag": "lightning-ddp", "expect_error": True,
                 "overrides": SMALL + ["trainer.strategy=ddp", "objective.name=non-saturating",
                                       f"train.max_steps={DEFAULT_STEPS}"]})
    return jobs


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("gan-ddp-cpu")
    cond = conditional_data(out / "cond.npz")
    rc, log = run_worker(cpu_jobs(cond), out)
    if rc != 0:
        pytest.fail(f"the distributed worker exited with {rc}; log tail:\n{tail(log)}")
    return out, log


# -- 1. every objective trains identically on two ranks ---------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_two_ranks_stay_identical(cpu_runs: tuple[Path, Path], objective: str) -> None:
    out, log = cpu_runs
    job = Ranks(out, f"obj-{objective}")
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    n_critic = 5 if objective in ("wgan", "wgan-gp") else 1
    assert_real_ddp_run(job, STEPS.get(objective, DEFAULT_STEPS), n_critic)
    if objective == "wgan":  # weight clipping ran after every critic step, on the synchronized weights
        assert max(t.abs().max().item() for t in job.states[0]["discriminator"].values()) <= 0.01 + 1e-7


def test_chunks_and_direct_steps_under_ddp_equal_one_iteration_per_batch(cpu_runs: tuple[Path, Path]) -> None:
    """Two ranks running 16 iterations per Lightning batch with direct steps (the defaults) end
    bit for bit where two ranks running one iteration per batch do (the chunk loop's StepBoundaryStop
    agreement and the sync points are collective: a mismatch would hang or diverge)."""
    out, log = cpu_runs
    chunked, single = Ranks(out, "obj-non-saturating"), Ranks(out, "one-per-batch")
    chunked.assert_ok(log)
    single.assert_ok(log)
    assert [s["iterations_per_batch"] for s in chunked.states] == [16, 16]
    assert [s["iterations_per_batch"] for s in single.states] == [1, 1]
    assert all(s["direct_steps"] for s in chunked.states + single.states)
    for a, b in zip(chunked.states, single.states):
        assert a["counters"] == b["counters"]
        for part in ("generator", "discriminator", "generator_ema"):
            for name, t in a[part].items():
                assert torch.equal(t, b[part][name]), f"{part}.{name}"
        fa, fb = flat(a["optimizers"]), flat(b["optimizers"])
        assert fa.keys() == fb.keys()
        assert all(torch.equal(v, fb[k]) if torch.is_tensor(v) else v == fb[k] for k, v in fa.items())


def test_n_critic_three(cpu_runs: tuple[Path, Path]) -> None:
    out, log = cpu_runs
    job = Ranks(out, "n-critic")
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    assert_real_ddp_run(job, 100, 3)


def test_conditional_model(cpu_runs: tuple[Path, Path]) -> None:
    out, log = cpu_runs
    job = Ranks(out, "conditional")
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    assert_real_ddp_run(job, 150, 1)
    # The label embeddings are trained parameters of both networks, synchronized like the rest.
    assert "cond.embed.weight" in job.states[0]["generator"]
    assert "cond.embed.weight" in job.states[0]["discriminator"]


def test_bf16_mixed_on_cpu(cpu_runs: tuple[Path, Path]) -> None:
    out, log = cpu_runs
    job = Ranks(out, "bf16")
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    assert_real_ddp_run(job, 150, 1)
    s0 = job.states[0]
    assert s0["precision"] == "bf16-mixed"
    assert "torch.bfloat16" in s0["loss_dtypes"], "autocast was not active in the discriminator loss"
    assert all(t.dtype == torch.float32 for t in s0["generator"].values())  # master weights stay fp32


# -- 2. two ranks compute the gradients of one process on the concatenated batch ---------------------


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradients_match_single_process(cpu_runs: tuple[Path, Path], case: str) -> None:
    out, log = cpu_runs
    ref = Ranks(out, f"grad-{case}-1proc", world=1)
    ref.assert_ok(log)
    ddp = Ranks(out, f"grad-{case}-2proc")
    ddp.assert_ok(log)
    single, (s0, s1) = ref.states[0], ddp.states
    # For each critic step, rank 0 and rank 1 hold the two halves of the single process's batch.
    n_critic = 2 if case == "wgan-gp" else 1
    halves = zip(s0["first_batch"].chunk(n_critic), s1["first_batch"].chunk(n_critic))
    assert torch.equal(torch.cat([torch.cat(pair) for pair in halves]), single["first_batch"])
    for net in ("discriminator", "generator"):
        g_ref, g0, g1 = single["grads"][net], s0["grads"][net], s1["grads"][net]
        assert g_ref.keys() == g0.keys() == g1.keys() and g_ref
        scale = max(t.abs().max().item() for t in g_ref.values())
        assert scale > 1e-4, f"{net}: gradients are ~0, the comparison would prove nothing"
        for name, t in g_ref.items():
            assert torch.equal(g0[name], g1[name]), f"{case}: {net}.{name}: ranks hold different all-reduced grads"
            torch.testing.assert_close(g0[name], t, rtol=1e-5, atol=1e-6 * scale,
                                       msg=lambda m, n=name: f"{case}: {net}.{n}: 2 ranks vs 1 process: {m}")


# -- 3. Lightning's own DDP fails on the same model; ours does not ------------------------------------


def test_lightning_single_wrapper_ddp_fails_on_a_gan(cpu_runs: tuple[Path, Path]) -> None:
    """``strategy="ddp"`` (one DDP over the LightningModule, find_unused_parameters=False).

    Lightning 2.6.6 raises from ``prepare_for_backward`` → ``reducer._rebuild_buckets()`` at the
    first generator backward (the discriminator backward left G's buckets unreduced) and replaces
    DDP's "Expected to have finished reduction in the prior iteration" with the text asserted
    below. If this test starts failing, Lightning changed the message or fixed GAN DDP
    (PR #20936): re-check docs/cluster.md.
    """
    out, log = cpu_runs
    job = Ranks(out, "lightning-ddp")
    for r, res in enumerate(job.results):
        assert res is not None, f"rank {r} wrote no result; log:\n{tail(log)}"
        assert not res["ok"], "Lightning's strategy='ddp' trained a GAN: has Lightning fixed GAN DDP?"
        assert res["error_type"] == "RuntimeError"
        assert "parameters that were not used in producing the loss" in res["error"], res["error"]
        assert "ddp_find_unused_parameters_true" in res["error"]
        assert "_rebuild_buckets" in res["traceback"] and "prepare_for_backward" in res["traceback"]
        assert job.states[r] is None  # it never finished an iteration's training
    ours = Ranks(out, "obj-non-saturating")  # the same model and data with GANDDPStrategy
    ours.assert_ok(log)
    assert ours.states[0]["counters"]["g_steps"] == DEFAULT_STEPS


# -- 4. control flow: a non-finite loss on ONE rank ---------------------------------------------------


def test_nonfinite_on_one_rank_is_skipped_on_all(cpu_runs: tuple[Path, Path]) -> None:
    out, log = cpu_runs
    job = Ranks(out, "nonfinite-skip")
    job.assert_ok(log)  # no hang: the launch finished within its limit
    assert_identical_across_ranks(job)
    for s in job.states:
        c = s["counters"]
        assert c["skipped_steps"] == 1 and c["g_steps"] == 10 and c["d_steps"] == 9 and c["iterations"] == 10, c
    # Printed by rank 0, whose own loss was finite: the decision was collective.
    assert re.search(r"warning: discriminator loss is .* at iteration 3 .*step skipped", log.read_text())


def test_nonfinite_on_one_rank_stops_all(cpu_runs: tuple[Path, Path]) -> None:
    out, log = cpu_runs
    job = Ranks(out, "nonfinite-stop")
    for r, res in enumerate(job.results):
        assert res is not None, f"rank {r} wrote no result; log:\n{tail(log)}"
        assert not res["ok"] and res["error_type"] == "NonFiniteError", res
        assert "iteration 3" in res["error"]
    assert (job.dir / "run" / "checkpoints" / "last.ckpt").is_file()  # the last good state, saved collectively
    blob = torch.load(job.dir / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert blob["ganforge"]["counters"]["iterations"] == 3


# -- 6. torchrun -----------------------------------------------------------------------------------------


def torchrun() -> list[str]:
    exe = Path(PY).parent / "torchrun"
    return [str(exe)] if exe.exists() else [PY, "-m", "torch.distributed.run"]


def test_torchrun_standalone_cli(tmp_path: Path) -> None:
    """``torchrun --standalone --nproc-per-node 2 -m ganforge fit ...``: one run directory,
    ``runs/<name>/torchrun_<TORCHELASTIC_RUN_ID>`` (a UUID torchrun draws under --standalone)."""
    root = tmp_path / "runs"
    cmd = torchrun() + ["--standalone", "--nproc-per-node", "2", "-m", "ganforge", "fit", *SMALL,
                        "train.max_steps=30", "trainer.devices=2", f"root_dir={root}", "name=tr", "--no-progress"]
    log = tmp_path / "torchrun.log"
    rc = launch(cmd, log, timeout=240)
    assert rc == 0, tail(log)
    dirs = [p.name for p in (root / "tr").iterdir()]
    assert len(dirs) == 1 and re.fullmatch(r"torchrun_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                                           dirs[0]), dirs
    run = root / "tr" / dirs[0]
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    blob = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert blob["ganforge"]["counters"]["g_steps"] == 30
    assert f"run directory {run}" in log.read_text()


@pytest.mark.parametrize("rendezvous", ["standalone", "static"])
def test_torchrun_ranks_agree_on_run_directory(tmp_path: Path, rendezvous: str) -> None:
    """Both ranks pick the same run directory by themselves (no GANFORGE_RUN_DIR from a parent).

    ``--standalone``: TORCHELASTIC_RUN_ID is a UUID shared by the ranks → ``torchrun_<uuid>``.
    Static rendezvous (``--master-port``, no run id): TORCHELASTIC_RUN_ID is ``none``; rank 0
    picks ``version_<n>`` and publishes it in torchrun's store (``run._rank0_choice``); without
    that, a rank starting after rank 0 had created ``version_0`` chose ``version_1``.
    """
    root = tmp_path / "runs"
    (root / "tr" / "version_0").mkdir(parents=True)  # an earlier run: the next one is version_1
    jobs = [{"tag": "rundir", "set_run_dir": False,
             "overrides": SMALL + ["train.max_steps=5", f"root_dir={root}", "name=tr"]}]
    if rendezvous == "standalone":
        args = ["--standalone"]
    else:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    rc, log = run_worker(jobs, tmp_path / "out", timeout=240,
                         cmd_prefix=torchrun() + args + ["--nproc-per-node", "2"])
    assert rc == 0, tail(log)
    job = Ranks(tmp_path / "out", "rundir")
    job.assert_ok(log)
    ids = {s["torchelastic_run_id"] for s in job.states}
    dirs = {s["run_dir"] for s in job.states}
    assert len(dirs) == 1, f"ranks chose different run directories: {dirs}"
    run_dir = Path(dirs.pop())
    if rendezvous == "standalone":
        (run_id,) = ids
        assert run_id != "none" and run_dir == root / "tr" / f"torchrun_{run_id}"
    else:
        assert ids == {"none"} and run_dir == root / "tr" / "version_1"
    assert (run_dir / "config.yaml").is_file()


# -- CUDA (NCCL) -----------------------------------------------------------------------------------------


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


GPU_SMALL = [o for o in SMALL if not o.startswith("trainer.accelerator")] + ["trainer.accelerator=gpu"]


@pytest.mark.cuda
@pytest.mark.skipif(gpu_count() < 1, reason="needs a CUDA GPU")
def test_cuda_gan_ddp_one_gpu_bf16(tmp_path: Path) -> None:
    """GANDDPStrategy on one GPU (world size 1, NCCL, a DDP wrapper each for G and D), bf16-mixed."""
    jobs = [{"tag": f"gpu-{obj}", "devices": 1,
             "overrides": GPU_SMALL + [f"objective.name={obj}", "trainer.strategy=gan_ddp",
                                       "trainer.precision=bf16-mixed", "train.max_steps=100"]}
            for obj in ("non-saturating", "wgan-gp")]
    rc, log = run_worker(jobs, tmp_path, timeout=300)
    assert rc == 0, tail(log)
    for job in jobs:
        r = Ranks(tmp_path, job["tag"], world=1)
        r.assert_ok(log)
        s = r.states[0]
        assert s["strategy"] == "GANDDPStrategy" and s["ddp_wrapped"] == ["discriminator", "generator"]
        assert s["precision"] == "bf16-mixed" and s["counters"]["g_steps"] == 100
        assert all(torch.isfinite(t).all() for t in s["generator"].values())


@pytest.mark.cuda
@pytest.mark.skipif(gpu_count() < 2, reason="needs two CUDA GPUs")
def test_cuda_two_gpus_nccl_stay_identical(tmp_path: Path) -> None:
    jobs = [{"tag": f"gpu2-{obj}", "overrides": GPU_SMALL + [f"objective.name={obj}", "train.max_steps=100",
                                                            "trainer.precision=bf16-mixed"]}
            for obj in ("non-saturating", "wgan-gp")]
    rc, log = run_worker(jobs, tmp_path, timeout=300)
    assert rc == 0, tail(log)
    for job in jobs:
        r = Ranks(tmp_path, job["tag"])
        r.assert_ok(log)
        assert_identical_across_ranks(r)



def test_gan_ddp_is_the_one_registered_name_and_trains_only_a_gan_module() -> None:
    """``gan_ddp`` (subprocess launch) serves a plain lightning.Trainer; the spawn variant, which
    ganforge fit never reached, is gone."""
    from lightning.pytorch.strategies import StrategyRegistry

    from ganforge.loop.strategy import GANDDPStrategy

    assert StrategyRegistry["gan_ddp"]["strategy"] is GANDDPStrategy
    assert StrategyRegistry["gan_ddp"]["init_params"] == {"start_method": "popen"}
    assert "gan_ddp_spawn" not in StrategyRegistry
    with pytest.raises(ValueError, match="find_unused_parameters=True is not supported"):
        GANDDPStrategy(find_unused_parameters=True)
    import lightning as L

    strategy = GANDDPStrategy()
    strategy.connect(L.LightningModule())
    with pytest.raises(TypeError, match=r"GANDDPStrategy trains a ganforge.GANModule, got LightningModule; use "
                                        r"Lightning's own DDPStrategy"):
        strategy.configure_ddp()
