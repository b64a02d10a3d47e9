"""What this machine has (CUDA GPUs, Apple's MPS), probed in one place, and the two checks that use it:
a config's ``trainer.accelerator``/``trainer.devices`` (``ganforge fit``) and a ``--device`` flag
(``ganforge sample``/``evaluate``). Both fail with one line naming the key or flag, before anything is built.

Not part of config resolution: a config is prepared on one machine and run on another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from ganforge.registry.errors import ConfigError


@dataclass(frozen=True)
class Hardware:
    cuda: int  # CUDA GPUs visible to this process
    mps: bool  # Apple's MPS backend usable
    visible: Optional[str]  # CUDA_VISIBLE_DEVICES as set, or None

    @property
    def where(self) -> str:
        """`` (CUDA_VISIBLE_DEVICES='1')`` when it is set: it is often why a GPU is missing."""
        return f" (CUDA_VISIBLE_DEVICES={self.visible!r})" if self.visible is not None else ""


def probe() -> Hardware:
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    return Hardware(cuda, bool(mps), os.environ.get("CUDA_VISIBLE_DEVICES"))


def check_trainer(trainer: dict[str, Any]) -> None:
    """Fail when this machine lacks what ``trainer.accelerator`` and ``trainer.devices`` ask for
    (Lightning would raise from deep inside ``Trainer``)."""
    hw = probe()
    acc = str(trainer.get("accelerator", "auto")).lower()
    devices = trainer.get("devices", 1)
    if acc in ("gpu", "cuda") and not hw.cuda and not (acc == "gpu" and hw.mps):
        raise ConfigError(f"trainer.accelerator={acc}: no CUDA GPU is visible on this machine{hw.where}; use "
                          "trainer.accelerator=cpu, or auto to take a GPU when there is one.")
    if acc == "mps" and not hw.mps:
        raise ConfigError("trainer.accelerator=mps: Apple's MPS backend is not available here; use "
                          "trainer.accelerator=cpu or auto.")
    if acc in ("gpu", "cuda") and hw.cuda:
        from ganforge.run.launch import requested_devices

        count = hw.cuda
        want = requested_devices(devices)  # a count, or GPU indices (Lightning's "0,1" form)
        if isinstance(want, int) and want > count:
            raise ConfigError(f"trainer.devices={devices}: only {count} CUDA GPU{'s' if count != 1 else ''} "
                              f"visible{hw.where}; use trainer.devices={count} (or -1 for all of them).")
        if isinstance(want, list) and any(not isinstance(i, int) or not 0 <= i < count for i in want):
            raise ConfigError(f"trainer.devices={devices}: GPU indices must be in 0..{count - 1} on this machine"
                              f"{hw.where}.")


def check_device(flag: str, device: str) -> None:
    """A torch device string that exists on this machine, or a ConfigError naming the flag."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{flag} {device}: not a device; use cpu, cuda or cuda:<index>.") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{flag} {device}: unsupported device type '{dev.type}'; use cpu or cuda.")
    hw = probe() if dev.type != "cpu" else None
    if dev.type == "cuda":
        if hw.cuda == 0:
            raise ConfigError(f"{flag} {device}: no CUDA GPU is visible on this machine; use {flag} cpu.")
        if dev.index is not None and dev.index >= hw.cuda:
            raise ConfigError(f"{flag} {device}: only {hw.cuda} CUDA GPU{'s' if hw.cuda != 1 else ''} visible "
                              f"(cuda:0..cuda:{hw.cuda - 1}).")
    elif dev.type == "mps" and not hw.mps:
        raise ConfigError(f"{flag} {device}: Apple's MPS backend is not available here; use {flag} cpu.")


__all__ = ["Hardware", "check_device", "check_trainer", "probe"]
