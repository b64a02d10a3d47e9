"""Fast paths as options, not forks: ``train.compile`` and ``train.channels_last`` for G and D.

Both change how the networks run, never what they are: ``torch.compile`` is applied in place
(:meth:`torch.nn.Module.compile`), so the raw modules stay the LightningModule's registered
submodules — checkpoint keys, the EMA copy (made from the raw generator) and the separate DDP
wrappers of :mod:`ganforge.loop.strategy` see plain modules. ``channels_last`` only changes the memory
layout of 4-D weights (NHWC convolutions on GPUs, with Tensor Cores); values and state-dict keys
stay the same.

Gradient penalties (WGAN-GP, R1) differentiate D's gradient (``create_graph=True``); a compiled D
cannot run that double backward, so ``train.compile`` is refused for such objectives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ganforge.registry.errors import ConfigError


def check(cfg: dict[str, Any], objective: Any) -> None:
    """Refuse ``train.compile`` when the objective needs double backward, and a ``train.compile_mode``
    that would have no effect (called before training)."""
    mode = cfg["train"].get("compile_mode", "default")
    if mode != "default" and not cfg["train"].get("compile"):
        raise ConfigError(f"train.compile_mode={mode} has no effect while train.compile is false. Set "
                          f"train.compile=true to compile in that mode, or leave train.compile_mode out.")
    if cfg["train"].get("compile") and objective.needs_double_backward:  # declared by every Objective
        spec = cfg["objective"]
        params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
        raise ConfigError(
            f"train.compile=true: objective '{spec['name']}'{f' ({params})' if params else ''} needs double "
            "backward (a gradient penalty), which torch.compile cannot differentiate. Set train.compile=false, "
            "or use an objective without a penalty (e.g. objective.r1_weight=0, or hinge instead of wgan-gp)."
        )


def has_spectral_norm(net: nn.Module) -> bool:
    """Whether ``net`` uses ``torch.nn.utils.parametrizations.spectral_norm``."""
    return any(type(p).__name__ == "_SpectralNorm" for m in net.modules()
               for plist in getattr(m, "parametrizations", {}).values() for p in plist)


def has_conv(net: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in net.modules())


def use_channels_last(setting: Any, device: torch.device, nets: list[nn.Module]) -> bool:
    """``auto``: on CUDA when a network has 2-D convolutions (NHWC is slower on the CPU)."""
    if setting == "auto":
        return device.type == "cuda" and any(has_conv(n) for n in nets)
    return bool(setting)


def apply(module: Any, device: torch.device) -> dict[str, Any]:
    """Apply ``train.channels_last`` and ``train.compile`` to a GANModule's networks, in place.

    Call before the networks move to their device and before DDP wraps them (the module's
    ``setup``). Returns what was applied, for logs and tests: ``{"channels_last": bool, "compile":
    (names of the compiled networks)}``.
    """
    t = module.train_cfg
    nets = [module.generator, module.discriminator]
    applied = {"channels_last": use_channels_last(t.get("channels_last", "auto"), device, nets),
               "compile": (), "compile_mode": t.get("compile_mode", "default") if t.get("compile") else None}
    if applied["channels_last"]:
        for net in nets + ([module.generator_ema] if module.generator_ema is not None else []):
            net.to(memory_format=torch.channels_last)  # only 4-D parameters and buffers change layout
    if t.get("compile", False):
        compiled = nets  # the EMA generator only samples: eager
        if has_spectral_norm(module.discriminator):
            # torch 2.13's compiled backward saves spectral norm's power-iteration vectors without
            # the copy eager mode makes, so D(real), D(fake), backward fails ("modified by an
            # inplace operation"). D stays eager; G is compiled.
            compiled = [module.generator]
            if module.rank == 0:
                print("ganforge: train.compile: the discriminator uses spectral norm, which torch.compile cannot "
                      "train (in-place power iteration); compiling the generator only.", flush=True)
        mode = t.get("compile_mode", "default")
        for net in compiled:
            # In place: no wrapper, no "_orig_mod." in the state-dict keys. Static shapes: the batch
            # never changes in training, and a shape change (sampling) recompiles instead of
            # switching to slower shape-generic kernels.
            net.compile(mode=None if mode == "default" else mode, dynamic=False)
        applied["compile"] = tuple(n for n, net in (("generator", module.generator),
                                                    ("discriminator", module.discriminator)) if net in compiled)
    return applied


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 256 * 2**20  # blocks under this come from the heap (glibc's default: 128 KiB, rising to 32 MiB)
TRIM_THRESHOLD_BYTES = 2**30  # freed memory at the heap's top kept up to this (glibc's default: 128 KiB, rising)


def keep_host_memory(setting: str = "keep") -> bool:
    """``train.host_malloc``: with ``keep``, tell glibc's malloc to serve blocks under 256 MiB from the heap
    and to keep up to 1 GiB of freed memory there instead of returning it to the system. Returns
    whether it was applied (``False`` for ``default`` and where the C library is not glibc).

    Why: an iteration on the CPU allocates and frees the same activations again and again. Under glibc's
    defaults a block over its (dynamic, at most 32 MiB) mmap threshold is mapped and unmapped each time,
    and freed memory at the heap's top over its trim threshold goes back to the system, so the next
    iteration page-faults it in again: docs/results.md measured 4-6 % of a DCGAN-32 iteration. What
    PyTorch's CPU tuning guide gets with jemalloc or tcmalloc, here without a preloaded library.
    Process-wide and not undone at the end of the fit (glibc has no way to restore its dynamic
    thresholds); it changes where memory comes from, never a value.
    """
    if setting != "keep":
        return False
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold must come first (it fixes the dynamic thresholds)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
