"""Stop at the next step boundary, on every rank together, and save: Ctrl-C, SIGTERM, SLURM requeue.

A signal handler only records the request. At a step boundary the ranks agree on it (the
largest request of any rank wins: a SIGTERM may reach one rank only, a Ctrl-C from a terminal
reaches them all), and then all of them act after the same step. Acting inside the handler
instead (Lightning's way) saves wherever each rank happens to be and deadlocks DDP.

- :class:`StepBoundaryStop` is that shape; :class:`RequeueStop` (the launch's requeue signal, SLURM's
  SIGUSR1 → checkpoint, then the launcher requeues the job) and :class:`InterruptStop` (SIGINT/SIGTERM →
  checkpoint, summary, exit 130/143) are its two uses. How the run stopped is theirs to say
  (:class:`EarlyStop`, one record per run that the runner passes to the callbacks that read it).
- :data:`SIGNALS` holds the process's SIGINT/SIGTERM state. Signals arrive at a process, not at
  a trainer, so this one object is shared: the CLI installs it before anything is built (a Ctrl-C
  during start-up ends cleanly too) and reads the outcome after ``fit`` returns or raises.
  First signal: during training a request for the next boundary; anywhere else (start-up, the
  final evaluation) :class:`Interrupted` at once. Second signal: exit at once (``os._exit``, so
  no atexit hook runs half-way and no traceback is printed); files are written atomically, so
  what was saved before stays intact.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

import lightning as L

if TYPE_CHECKING:
    from ganforge.run.launch import Launch

NAMES = {int(signal.SIGINT): "SIGINT (Ctrl-C)", int(signal.SIGTERM): "SIGTERM"}


def exit_code(signum: int) -> int:
    """The shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class Interrupted(BaseException):
    """A first SIGINT/SIGTERM where no step boundary is coming (start-up, final evaluation).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it;
    Lightning runs its ``on_exception`` hooks and re-raises it (a ``KeyboardInterrupt`` would be
    turned into ``sys.exit(1)`` by Lightning).
    """

    def __init__(self, signum: int, during: str) -> None:
        super().__init__(f"{NAMES.get(signum, signum)} during {during}")
        self.signum = signum
        self.during = during


class SignalState:
    """SIGINT/SIGTERM handlers and what they recorded (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.signum = 0  # the first signal received here (0: none)
        self.phase = "start-up"  # "training" while a step boundary is coming, then "final evaluation"
        # Who speaks: the launch's rank (ganforge.run.launch.Launch.rank, set by fit once detected), then
        # the trainer's global rank once training starts. Until then every process may speak.
        self.rank = 0
        self.launcher: Any = None  # Lightning's launcher of the other ranks (set in training)
        self.pid = os.getpid()
        # Filled by InterruptStop for the CLI's message: where the run stopped and what it saved.
        self.outcome: dict[str, Any] = {}

    def install(self) -> Callable[[], None]:
        """Install the handlers; returns a function that puts the previous ones back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        self.pid = os.getpid()
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in before:
            signal.signal(s, self._handler)

        def restore() -> None:
            for s, h in before.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

        return restore

    def _say(self, text: str) -> None:
        if self.rank == 0:
            os.write(2, (text + "\n").encode())  # print() is not safe inside a signal handler

    def _handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            return  # a forked data-loader worker: the training process decides (a terminal signals both)
        name = NAMES.get(signum, str(signum))
        if self.signum:
            self._say(f"\nganforge: second interrupt ({name}): exiting now without saving; files written before "
                      "(checkpoints/last.ckpt included) are intact.")
            kill = getattr(self.launcher, "kill", None)
            if kill is not None:  # ranks this process started would wait for it in a collective forever
                try:
                    kill(signal.SIGKILL)
                except Exception:  # noqa: BLE001 - exiting anyway
                    pass
            os._exit(exit_code(signum))
        self.signum = signum
        if self.phase == "requeued":
            return
        if self.phase == "training":
            self._say(f"\nganforge: {name}: finishing the current step, then saving checkpoints/last.ckpt and "
                      "summary.json (interrupt again to exit at once).")
            return
        raise Interrupted(signum, self.phase)


SIGNALS = SignalState()


class EarlyStop:
    """How training stopped before its end, if it did: set by the stop callbacks at the step boundary
    where the ranks agreed, read by the callbacks that must not evaluate, snapshot or save a stopped
    run as finished, and by the runner. One object per run, passed to each of them explicitly.
    """

    def __init__(self) -> None:
        self.reason: Optional[str] = None  # "requeue", or the signal's name ("SIGINT", "SIGTERM")

    @property
    def requeued(self) -> bool:
        """Stopped for a requeue: the final evaluation belongs to the requeued attempt."""
        return self.reason == "requeue"

    @property
    def interrupted(self) -> Optional[str]:
        """The signal that stopped training, or None."""
        return None if self.reason in (None, "requeue") else self.reason

    def __bool__(self) -> bool:
        return self.reason is not None


def agree(pl_module: Any, value: int) -> int:
    """The largest ``value`` over all ranks (collective: call it on every rank at the same step)."""
    if pl_module.world_size == 1:
        return int(value)
    t = torch.tensor(float(value), device=pl_module.device)
    return int(pl_module.trainer.strategy.reduce(t, reduce_op="max").item())


class StepBoundaryStop(L.Callback):
    """Act on a request (a number > 0) after the first step at which any rank has one.

    Under DDP the agreement is an all-reduce and a host sync: it runs at the first batch end after
    the iteration count passes a multiple of ``CHECK_EVERY`` (a batch may hold several iterations,
    ``train.iterations_per_batch``; every rank runs the same batches, so the same batch end on every
    rank); a single process checks at every batch end.
    """

    handles_iteration_chunks = True  # agrees when the iteration count passes a multiple of CHECK_EVERY

    CHECK_EVERY = 10

    def __init__(self, checkpoint: Any, early: Optional[EarlyStop] = None) -> None:
        self.checkpoint = checkpoint  # GANCheckpoint
        self.early = early if early is not None else EarlyStop()  # shared with the callbacks that read it
        self.stopped = 0  # the agreed request, once acted on
        self._checked_block: Optional[int] = None  # iterations // CHECK_EVERY at the last agreement (DDP)

    def request(self) -> int:
        raise NotImplementedError

    def act(self, trainer: L.Trainer, pl_module: Any, value: int) -> None:
        raise NotImplementedError

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if self.stopped:
            return
        if pl_module.world_size > 1:  # when the count passes a multiple (a batch may hold several iterations)
            block, last = pl_module.iterations // self.CHECK_EVERY, self._checked_block
            self._checked_block = block
            if last is None or block == last:  # the fit's first batch end only notes where it starts
                return
        value = agree(pl_module, self.request())
        if value:
            self.stopped = value
            trainer.should_stop = True
            self.act(trainer, pl_module, value)


class RequeueStop(StepBoundaryStop):
    """On the launch's requeue signal (SLURM: SIGUSR1, sent by ``#SBATCH --signal=SIGUSR1@<secs>``): every
    rank saves ``last.ckpt`` after the same step, then rank 0 asks the launcher to requeue the job.

    The later attempt runs in the same run directory (:attr:`Launch.run_dir_name`) and resumes from
    that checkpoint (:attr:`Launch.resume_in_place`): no step is done twice or lost. Lightning's own
    handler saves inside the signal handler, wherever each rank happens to be, and deadlocks DDP.

    Args:
        checkpoint: The run's ``GANCheckpoint``.
        launch: This process's launch; its ``requeue_signal`` is the one listened to.
        requeue: The launcher's ``requeue(launch)`` (raises ``RuntimeError`` when the scheduler refuses).
    """

    def __init__(self, checkpoint: Any, launch: "Launch", requeue: Callable[["Launch"], None],
                 state: SignalState = SIGNALS, early: Optional[EarlyStop] = None) -> None:
        super().__init__(checkpoint, early)
        if launch.requeue_signal is None:
            raise ValueError(f"launch '{launch.kind}' cannot be requeued (requeue_signal is None)")
        self.launch = launch
        self.requeue = requeue
        self.state = state
        self.flag = False

    @property
    def requeued(self) -> bool:
        """Training stopped for a requeue: the final evaluation belongs to the requeued attempt."""
        return bool(self.stopped)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(int(self.launch.requeue_signal), self._handler)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        before = getattr(self, "_before", None)
        if threading.current_thread() is threading.main_thread() and before is not None:
            signal.signal(int(self.launch.requeue_signal), before)  # a later fit in this process starts clean
            self._before = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.flag = True  # act at the next step boundary, on every rank at once

    def request(self) -> int:
        return int(self.flag)

    def act(self, trainer: L.Trainer, pl_module: Any, value: int) -> None:
        self.checkpoint.save(trainer, pl_module)
        self.early.reason = "requeue"
        self.state.phase = "requeued"  # the scheduler's SIGTERM that ends this attempt is then no interrupt
        if not trainer.is_global_zero:
            return
        job, label = self.launch.job_id or "", self.launch.kind.upper()
        print(f"ganforge: {label} signal: saved {self.checkpoint.last} at generator step {pl_module.g_steps}; "
              f"requeueing job {job}", flush=True)
        try:
            self.requeue(self.launch)
        except Exception as exc:  # noqa: BLE001 - the checkpoint is saved: say how to go on by hand
            print(f"ganforge: warning: requeueing job {job} failed: {exc}; resume by hand with "
                  f"--resume {self.checkpoint.last}", flush=True)


class InterruptStop(StepBoundaryStop):
    """SIGINT/SIGTERM: stop after the step, save ``last.ckpt`` and a ``summary.json`` marked
    interrupted. Goes first in the callback list, so that its ``on_train_end`` (the save) runs
    after every callback has finished the last step and before the final evaluation starts."""

    def __init__(self, checkpoint: Any, evaluation: Any, state: SignalState = SIGNALS,
                 early: Optional[EarlyStop] = None) -> None:
        super().__init__(checkpoint, early)
        self.evaluation = evaluation
        self.state = state

    def request(self) -> int:
        return self.state.signum

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # Lightning's signal connector has just installed its SIGTERM handler (which sets its own
        # flag and ends the loop with an exception): ours replaces it; Lightning's teardown puts
        # back whatever was installed before fit (the CLI's handlers, or Python's defaults).
        self.state.rank = trainer.global_rank
        self.state.launcher = trainer.strategy.launcher
        self.state.install()
        self.state.phase = "training"

    def act(self, trainer: L.Trainer, pl_module: Any, value: int) -> None:
        self.early.reason = NAMES.get(value, str(value)).split()[0]
        self.state.signum = self.state.signum or value  # a rank the signal did not reach exits alike

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.state.phase == "training":
            self.state.phase = "final evaluation"
        if not self.stopped:
            return
        self.state.phase = "saving after the interrupt"
        self.checkpoint.save(trainer, pl_module)
        self._record(trainer, pl_module, "training")

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, Interrupted) and exception.during == "final evaluation":
            # Training is complete and consistent: keep it, unless saving is collective (DDP) and the
            # signal may have reached one rank only (the others would wait in the save's barrier).
            if pl_module.world_size == 1 and not self.checkpoint.saved_now(pl_module):
                self.checkpoint.save(trainer, pl_module)
            self._record(trainer, pl_module, "final evaluation")

    def _record(self, trainer: L.Trainer, pl_module: Any, during: str) -> None:
        saved = self.checkpoint.saved_now(pl_module)
        last = previous_checkpoint(self.checkpoint.last)
        info = {"signal": NAMES.get(self.state.signum, str(self.state.signum)).split()[0], "during": during,
                "g_steps": pl_module.g_steps, "checkpoint": str(last) if last else None,
                "checkpoint_is_current": saved}
        self.state.outcome = {**info, "saved_now": saved, "summary": None}
        if trainer.is_global_zero:
            path = self.evaluation.write_interrupted_summary(pl_module, info)
            self.state.outcome["summary"] = str(path)


def previous_checkpoint(path: Optional[Path]) -> Optional[Path]:
    """``path`` when it is a file (what a message may then call intact), else None."""
    return path if path is not None and Path(path).is_file() else None


def report(state: SignalState, during: str, resume: Optional[Path], command: list[str]) -> str:
    """The one message after an interrupt: what stopped where, what is saved, how to go on.

    Args:
        during: where the signal arrived ("start-up", "training", "final evaluation").
        resume: the checkpoint this run resumed from, if any.
        command: the command line to resume with, ``--resume <checkpoint>`` added by this function.
    """
    import shlex

    name = NAMES.get(state.signum, str(state.signum))
    out = state.outcome
    ckpt = out.get("checkpoint")
    again = shlex.join([*command, "--resume", ckpt]) if ckpt else ""
    summary = f" and {out['summary']} (marked interrupted)" if out.get("summary") else ""
    if out.get("during") == "training":
        return (f"ganforge: stopped by {name} after generator step {out['g_steps']}: saved {ckpt}{summary}. "
                f"Resume with: {again}")
    if "final evaluation" in (during, out.get("during")):
        if out.get("saved_now"):
            state_line = f"training finished at generator step {out['g_steps']} and {ckpt} holds it"
            tail = f" Compute the final metrics with: ganforge evaluate {shlex.quote(ckpt)}"
        elif ckpt:
            state_line = (f"training finished at generator step {out['g_steps']} but its final checkpoint was not "
                          f"written; the earlier {ckpt} is intact")
            tail = f" Resume from it with: {again}"
        else:
            state_line = f"training finished at generator step {out['g_steps']} but no checkpoint was written"
            tail = ""
        return f"ganforge: {name} during the final evaluation: {state_line}{summary}.{tail}"
    if during == "requeued":
        return f"ganforge: {name} after the requeue checkpoint; nothing more to save."
    untouched = f"; the checkpoint {resume} it resumed from is untouched" if previous_checkpoint(resume) else ""
    return f"ganforge: {name} during {during}, before training began: nothing was trained or saved{untouched}."
