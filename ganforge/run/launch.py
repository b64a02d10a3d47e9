"""SLURM requeue that is safe for DDP: checkpoint at a step boundary, on all ranks together.

Lightning's own SIGUSR1 handler saves the checkpoint inside the signal handler, wherever each
rank happens to be; the save ends in a barrier, so a rank that got the signal a step later is in
a different collective and both hang (seen on a local cluster, tests/cluster/README.md). Here the
handler only sets a flag; every 10 iterations the ranks take the max of their flags,
so all of them save ``checkpoints/last.ckpt`` (atomically) after the same step; then rank 0 runs
``scontrol requeue``. The requeued attempt runs in the same ``runs/<name>/slurm_<job id>/`` and
resumes from that checkpoint (:func:`ganforge.run.runner.choose_run_dir`): no step is done twice or lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any

import lightning as L

from ganforge.run.stopping import SIGNALS, StepBoundaryStop


def in_slurm_job() -> bool:
    """A batch job (not an interactive ``salloc``/``srun --pty bash``, which cannot be requeued)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


class SlurmRequeue(StepBoundaryStop):
    """On ``signum`` (SIGUSR1, sent by ``#SBATCH --signal=SIGUSR1@<secs>``): checkpoint and requeue.

    The agreement on a step boundary is :class:`ganforge.run.stopping.StepBoundaryStop`'s (every
    ``CHECK_EVERY`` iterations under DDP: enough for a signal a minute or more before the end).
    """

    def __init__(self, checkpoint: Any, signum: int = signal.SIGUSR1) -> None:
        super().__init__(checkpoint)
        self.signum = signum
        self.flag = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.flag = True  # act at the next step boundary, on every rank at once

    def request(self) -> int:
        return int(self.flag)

    def act(self, trainer: L.Trainer, pl_module: Any, value: int) -> None:
        self.checkpoint.save(trainer, pl_module)
        pl_module.requeued = True
        SIGNALS.phase = "requeued"  # SLURM's SIGTERM that ends this attempt is then no interrupt
        if trainer.is_global_zero:
            job = os.environ.get("SLURM_JOB_ID", "")
            print(f"ganforge: SLURM signal: saved {self.checkpoint.last} at generator step {pl_module.g_steps}; "
                  f"requeueing job {job}", flush=True)
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"ganforge: warning: `scontrol requeue {job}` failed ({result.stderr.strip()}); resume "
                      f"by hand with --resume {self.checkpoint.last}", flush=True)
