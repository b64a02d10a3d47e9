"""The first-party launchers: ``slurm``, ``torchrun`` and ``local``, registered like a third party's.

Each one reads the environment it is given and nothing else; the engine tries them in priority
order (``slurm``, then ``torchrun``, then ``local``, which always matches) and passes the first
:class:`ganforge.Launch` one returns to the run directory rule, the loggers and the requeue callback.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Mapping, Optional

from ganforge import FALLBACK, PROCESS_LAUNCHER, SCHEDULER, Launch, hookimpl

INTERACTIVE_JOB_NAMES = ("bash", "interactive")  # salloc / srun --pty shells: not batch jobs (Lightning's rule)


def _int(env: Mapping[str, str], *names: str) -> Optional[int]:
    """The first of ``names`` set to a whole number."""
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


class SlurmLauncher:
    """A SLURM batch job (``sbatch``; not an interactive allocation): ``runs/<name>/slurm_<job id>/`` for
    every rank and every requeued attempt, which resumes its ``last.ckpt``; SIGUSR1
    (``#SBATCH --signal=SIGUSR1@<secs>``) checkpoints at a step boundary and runs ``scontrol requeue``."""

    priority = SCHEDULER

    def detect(self, env: Mapping[str, str]) -> Optional[Launch]:
        job = env.get("SLURM_JOB_ID", "").strip()
        if not job or env.get("SLURM_JOB_NAME") in INTERACTIVE_JOB_NAMES:
            return None
        # Lightning takes ranks from SLURM only for tasks started by srun (SLURM_NTASKS set); only then
        # does every rank get the signal and take part in the step-boundary agreement.
        tasks = "SLURM_NTASKS" in env
        return Launch(
            kind="slurm", job_id=job, rank=_int(env, "RANK", "SLURM_PROCID") or 0,
            world_size=_int(env, "WORLD_SIZE", "SLURM_NTASKS"), run_dir_name=f"slurm_{job}",
            logger_run_id=f"slurm-{job}", tasks_per_node=_int(env, "SLURM_NTASKS_PER_NODE") if tasks else None,
            requeue_signal=int(signal.SIGUSR1) if tasks else None,
            resume_in_place=True)

    def requeue(self, launch: Launch) -> None:
        result = subprocess.run(["scontrol", "requeue", str(launch.job_id)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`scontrol requeue {launch.job_id}` failed ({result.stderr.strip()})")

    def cluster_environment(self, launch: Launch) -> Any:
        if not launch.can_requeue:
            return None
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        # Lightning's own requeue saves inside the signal handler (deadlock-prone under DDP); ganforge's
        # waits for a step boundary. Lightning still reads ranks and addresses from SLURM.
        return SLURMEnvironment(auto_requeue=False)


class TorchrunLauncher:
    """``torchrun``: with a run id (``--standalone``, ``--rdzv-id``) every rank writes to
    ``runs/<name>/torchrun_<run id>/``; with a static rendezvous (run id ``none``) rank 0 claims the next
    ``version_<n>`` and the other ranks take its choice."""

    priority = PROCESS_LAUNCHER

    def detect(self, env: Mapping[str, str]) -> Optional[Launch]:
        run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
        if not run_id:
            return None
        world = _int(env, "WORLD_SIZE")
        named = run_id != "none"
        return Launch(kind="torchrun", job_id=run_id if named else None, rank=_int(env, "RANK") or 0,
                      world_size=world, run_dir_name=f"torchrun_{run_id}" if named else None,
                      logger_run_id=f"torchrun-{run_id}" if named else None, tasks_per_node=_int(env, "LOCAL_WORLD_SIZE"),
                      rank0_chooses=not named and (world or 1) > 1)


class LocalLauncher:
    """A plain ``ganforge fit``: the next ``runs/<name>/version_<n>/``; with ``trainer.devices=N``
    Lightning starts the other ranks by running the same command again."""

    priority = FALLBACK

    def detect(self, env: Mapping[str, str]) -> Optional[Launch]:
        rank = _int(env, "RANK")
        if rank is None:  # a rank Lightning started: LOCAL_RANK on its node; any other node's is not rank 0
            local, node = _int(env, "LOCAL_RANK") or 0, _int(env, "NODE_RANK") or 0
            rank = local if node == 0 else node + local
        return Launch(kind="local", rank=rank)  # the world is trainer.devices x trainer.num_nodes


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_launchers(register):
    register("slurm", SlurmLauncher, description="SLURM batch jobs: slurm_<job id> run directory, SIGUSR1 requeue")
    register("torchrun", TorchrunLauncher, description="torchrun: torchrun_<run id>, or rank 0's version_<n>")
    register("local", LocalLauncher, description="a plain ganforge fit: the next version_<n> (always matches)")
