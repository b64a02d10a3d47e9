"""Loading a trained GAN back from a ganforge checkpoint (for sampling and evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ganforge.components import DataInfo
from ganforge.module import GANModule
from ganforge.plugins import ConfigError, Registry, get_registry


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint '{path}' not found (relative to {Path.cwd()}); runs keep theirs in "
                          "runs/<name>/<version>/checkpoints/last.ckpt.")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"checkpoint '{path}' cannot be read ({type(exc).__name__}: {exc}); it is corrupt or not a "
                          "checkpoint.") from None
    if not isinstance(blob, dict) or "ganforge" not in blob or not blob["ganforge"].get("config"):
        raise ConfigError(f"checkpoint '{path}' was not written by ganforge (no 'ganforge' config section).")
    return blob


def info_from_dict(d: dict[str, Any]) -> DataInfo:
    d = dict(d)
    d["sample_shape"] = tuple(d["sample_shape"])
    d["value_range"] = tuple(d.get("value_range") or (-1.0, 1.0))
    if d.get("modes") is not None:
        d["modes"] = torch.tensor(d["modes"], dtype=torch.float32)
    return DataInfo(**d)


def load_module(path: str | Path, registry: Optional[Registry] = None, device: str = "cpu") -> GANModule:
    """Rebuild G, D (and the EMA) from the checkpoint's own config and data info; no dataset needed."""
    blob = read_checkpoint(path)
    reg = registry or get_registry()
    cfg = blob["ganforge"]["config"]
    info = info_from_dict(blob["ganforge"]["info"])
    G = reg.build("generator", cfg["generator"], "generator", info=info, seed=cfg["seed"])
    D = reg.build("discriminator", cfg["discriminator"], "discriminator", info=info, seed=cfg["seed"])
    objective = reg.build("objective", cfg["objective"], "objective", info=info)
    module = GANModule(G, D, objective, info, cfg["train"], cfg["optim"], seed=cfg["seed"])
    module.run_config = cfg
    missing, unexpected = module.load_state_dict(blob["state_dict"], strict=False)
    if missing or unexpected:
        raise ConfigError(f"checkpoint '{path}' does not match its networks: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}. Were the plugins changed since it was written?")
    module.on_load_checkpoint(blob)
    return module.to(device).eval()
