"""Loading a trained GAN back from a ganforge checkpoint (for sampling and evaluation)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch

from ganforge.contract.components import DataInfo
from ganforge.io import NEVER_EXECUTES, UnsafeFileError, torch_load_data
from ganforge.loop.module import GANModule, restore_objective_state
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import Registry, get_registry

# What numpy arrays pickle to: ganforge before checkpoints became plain data kept numpy's RNG state so.
_OLD_FORMAT = re.compile(r"numpy\.(_core\.|core\.)?(multiarray\._reconstruct|ndarray|dtype|dtypes\.\w+)")


def checkpoint_error(path: str | Path, exc: BaseException, hint: str = "") -> ConfigError:
    """The one-line error for a checkpoint that cannot be loaded as plain data."""
    if isinstance(exc, UnsafeFileError):
        if exc.found and all(_OLD_FORMAT.fullmatch(g) for g in exc.found):
            return ConfigError(
                f"checkpoint '{path}' was written by a ganforge from before checkpoints became plain data (it holds "
                f"numpy arrays: {', '.join(exc.found)}), and {NEVER_EXECUTES}, so it is not loaded. No released "
                "ganforge wrote such files and there is nothing to migrate: start the run again with this version "
                "(`ganforge fit` without --resume), whose checkpoints load safely."
            )
        return ConfigError(
            f"checkpoint {exc} — code or objects other than tensors, numbers and strings; {NEVER_EXECUTES}, so it "
            "was not loaded and nothing in it ran. Use a checkpoint written by ganforge itself "
            "(runs/<name>/version_<n>/checkpoints/last.ckpt), from a source you trust."
        )
    return ConfigError(f"checkpoint '{path}' cannot be read: {_what_is(path, exc)}.{hint}")


def _what_is(path: str | Path, exc: BaseException) -> str:
    """What the file looks like, for a message (torch's own errors, e.g. 'Unsupported operand 103'
    for a text file, say nothing to a user)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"{e.strerror or e}"
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return f"a zip file that torch cannot read as a checkpoint, probably truncated ({type(exc).__name__}: {exc})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\n\r\t" for c in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"it is a text file, not a checkpoint (it begins {first!r})"
    return f"it is not a PyTorch checkpoint, or it is corrupt ({type(exc).__name__}: {exc})"


def load_checkpoint_file(path: str | Path, *, mmap: bool = False, map_location: Any = "cpu",
                         hint: str = "") -> Any:
    """A checkpoint file's contents, loaded as data only (``torch.load(weights_only=True)``).

    Raises:
        ConfigError: naming the file: it holds objects other than plain data (nothing is run), it was
            written before checkpoints were plain data, or it is corrupt; ``hint`` ends the last message.
    """
    try:
        return torch_load_data(path, mmap=mmap, map_location=map_location)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way, naming the file
        raise checkpoint_error(path, exc, hint) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint '{path}' not found (relative to {Path.cwd()}); runs keep theirs in "
                          "runs/<name>/<version>/checkpoints/last.ckpt.")
    blob = load_checkpoint_file(p)
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
    try:
        info = info_from_dict(blob["ganforge"]["info"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"checkpoint '{path}': its data info (ganforge.info) is malformed: {exc}. Use a checkpoint "
                          "written by ganforge itself.") from None
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
    restore_objective_state(objective, blob, path)  # calibrated constraints: as the run measured them
    return module.to(device).eval()
