"""Run configuration: YAML + dotted command-line overrides → a validated, fully resolved dict.

Validation happens before anything is built or trained. Every error names the key path,
the bad value, what was expected and the closest valid choice. The resolved config (all
defaults filled in from the factories' signatures) is what ``ganforge config show`` prints
and what every run writes to its directory.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml

from ganforge.registry.bounds import SEED_RANGE, NonNegative, Positive, Range, violated
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import Registry
from ganforge.registry.schema import NO, Component, coerce, plain, type_name, validate_params

COMPONENT_SECTIONS = ("dataset", "generator", "discriminator", "objective")
DEFAULT_CONFIG = "ring8.yaml"


# -- schemas of the engine's own sections (typed signatures, validated like plugin factories) -----------


def train_section(
    batch_size: Annotated[int, Positive] = 64,
    max_steps: Annotated[Optional[int], NonNegative] = 1000,
    max_images: Annotated[Optional[int], NonNegative] = None,
    n_critic: Annotated[int, Positive] = 1,
    ema_halflife_images: Annotated[Optional[float], Positive] = None,
    ema_rampup: Annotated[Optional[float], Positive] = None,
    grad_clip: Annotated[Optional[float], Positive] = None,
    lr_decay: Literal["none", "linear"] = "none",
    lr_decay_start: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.5,
    on_nonfinite: Literal["stop", "skip"] = "stop",
    max_consecutive_skips: Annotated[Optional[int], NonNegative] = 100,
    checkpoint_every_n_steps: Annotated[int, NonNegative] = 1000,
    log_every_n_steps: Annotated[int, Positive] = 10,
    num_workers: Annotated[int, NonNegative] = 0,
    cpu_threads: Annotated[Optional[int], Positive] = None,
    host_malloc: Literal["keep", "default"] = "keep",
    data_on_device: Literal["auto", True, False] = "auto",
    compile: bool = False,
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default",
    channels_last: Literal["auto", True, False] = "auto",
    iterations_per_batch: Annotated[int, Positive] = 16,
) -> None:
    """Training loop settings.

    Args:
        batch_size: Global batch per step (over all devices); must divide by the world size.
        max_steps: Stop after this many generator steps (``null``: no step limit).
        max_images: Stop after this many real images shown to the discriminator (``null``: no limit).
        n_critic: Discriminator steps per generator step (the objective may ask for more).
        ema_halflife_images: Half-life of the generator EMA in images (StyleGAN2-ADA's ``ema_kimg``);
            ``null`` disables the EMA.
        ema_rampup: Half-life ramp-up: the half-life is ``min(halflife, images_seen * rampup)``.
        grad_clip: Clip each network's gradient norm to this value (after unscaling under AMP).
        lr_decay: ``linear``: both learning rates decay linearly to 0 from ``lr_decay_start`` of
            ``max_steps`` to the end (as SNGAN); a function of the generator step, so resume-exact.
        lr_decay_start: Fraction of ``train.max_steps`` at which the decay starts.
        on_nonfinite: ``stop`` (save the last good state and stop) or ``skip`` the step. The
            decision is taken on the device; skipped steps are reported at the next logging step.
        max_consecutive_skips: With ``on_nonfinite: skip``, stop as ``stop`` does when more than this
            many optimizer steps in a row are not finite (``null``: never stop).
        checkpoint_every_n_steps: Write ``checkpoints/last.ckpt`` every N generator steps.
        log_every_n_steps: Log losses every N generator steps.
        num_workers: Data-loader worker processes.
        cpu_threads: Threads torch uses for CPU work (``torch.set_num_threads`` at the start of the fit);
            ``null``: torch's default, one per core. On a shared or busy machine 1 can be several times
            faster (docs/quickstart.md, "CPU threads"). May change on resume.
        host_malloc: How glibc's malloc treats freed host (CPU) memory, process-wide from the start of
            the fit. ``keep``: blocks under 256 MiB come from the heap, and up to 1 GiB of freed memory
            stays in the process for the next allocation (``mallopt``: M_MMAP_THRESHOLD, M_TRIM_THRESHOLD),
            so the tensors an iteration allocates and frees are not page-faulted in again every time
            (4-6 % of a DCGAN iteration on the CPU, docs/results.md). ``default``: glibc's own
            thresholds. No effect without glibc (macOS, musl). May change on resume.
        data_on_device: Keep the whole dataset on the training device and gather each batch there
            (no loader workers, no per-item fetch). ``auto``: when the dataset is an in-memory tensor
            dataset that takes under a quarter of the free device memory; ``true``: always (any
            dataset, read once); ``false``: the data loader. The same batches either way.
        compile: ``torch.compile`` G and D (slow start, faster steps on GPUs). Refused for objectives
            that need double backward (``wgan-gp``, ``r1_weight > 0``).
        compile_mode: ``torch.compile``'s mode with ``train.compile`` (refused without it): ``default``; ``reduce-overhead``
            (CUDA graphs: replays each network's kernels in one launch, for small batches where the
            GPU waits on Python; on the CPU the same as ``default``); ``max-autotune-no-cudagraphs``
            (searches kernel configurations: minutes of start-up). Shapes are compiled static.
            ``reduce-overhead`` was measured on one GPU (docs/results.md); under DDP it is untested.
        channels_last: NHWC memory layout for G and D; ``auto``: on CUDA for convolutional networks.
        iterations_per_batch: With the data on the device, run up to this many iterations per
            Lightning batch (a chunk ends early at every logging, checkpoint, evaluation and picture
            step, and at the end): Lightning's per-batch work runs once per chunk. The same weights,
            counters, logs and checkpoints as ``1`` (one iteration per batch); a signal (Ctrl-C,
            SIGTERM, requeue) is acted on at the end of the chunk. A callback with
            ``on_train_batch_start``/``_end`` that does not declare ``handles_iteration_chunks = True``
            gets ``1``. May change on resume.
    """


def metrics_section(every_n_steps: Annotated[int, NonNegative] = 1000, use_ema: bool = True, list: list = []) -> None:  # noqa: A002,B006
    """Evaluation settings.

    Args:
        every_n_steps: Evaluate every N generator steps (and always at the end); ``0``: only at the end.
        use_ema: Evaluate the EMA generator when there is one.
        list: Metrics, each ``{name: <registered metric>, <params>...}``.
    """


def samples_section(every_n_steps: Annotated[int, NonNegative] = 0, num_samples: Annotated[int, NonNegative] = 0,
                    snapshots: Annotated[int, Positive] = 6) -> None:
    """Sample pictures written to ``samples/`` during training.

    Args:
        every_n_steps: Save a picture every N generator steps; ``0``: ``metrics.every_n_steps``,
            or a tenth of ``train.max_steps`` when that is also ``0`` (1000 without a step limit);
            the resolved config holds the number decided.
        num_samples: Samples per picture; ``0``: 1000 points or 64 images (by the data; the run's
            ``config.yaml`` holds the number used).
        snapshots: Panels in the side-by-side progress picture (first, last and evenly spaced).
    """


def console_section(status_every_s: Annotated[float, NonNegative] = 30.0) -> None:
    """What a run prints while it trains.

    Args:
        status_every_s: Without a progress bar (standard output is not a terminal, as in every batch
            job, or ``--no-progress``), print a status line — step, images, seconds per 1k images,
            losses, latest metrics, memory, ETA — at least every this many seconds, and each
            evaluation as it finishes; ``0``: only the first and last step and the evaluations.
    """


def optimizer_section(
    name: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam",
    lr: Annotated[float, NonNegative] = 2e-4,
    betas: Annotated[tuple[float, float], Range(0.0, 1.0, high_open=True)] = (0.5, 0.999),
    eps: Annotated[float, Positive] = 1e-8,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    momentum: Annotated[float, NonNegative] = 0.0,
) -> None:
    """One network's optimizer. ``betas`` apply to Adam(W); ``momentum`` to SGD and RMSprop."""


# The logger that is always added to a non-empty logger list: metrics.csv is the run's own record
# (`ganforge report` reads it). Loggers themselves are plugins (hook ganforge_register_loggers).
RECORD_LOGGER = "csv"


def _schema(fn: Any, kind: str, name: str = "") -> Component:
    return Component(kind=kind, name=name or kind, factory=fn, description="", plugin="ganforge", distribution="ganforge", version="")


SECTIONS = {
    "train": _schema(train_section, "section", "train"),
    "metrics": _schema(metrics_section, "section", "metrics"),
    "samples": _schema(samples_section, "section", "samples"),
    "console": _schema(console_section, "section", "console"),
}
TOP_LEVEL = {"name", "seed", "root_dir", *COMPONENT_SECTIONS, *SECTIONS, "optim", "logger", "callbacks", "trainer"}

# Trainer arguments ganforge owns; setting them under `trainer:` would silently break the loop.
TRAINER_MANAGED = {
    "max_steps": "use train.max_steps (counts generator steps; Lightning's step counts every optimizer step)",
    "max_epochs": "use train.max_steps or train.max_images (ganforge stops on its own counters)",
    "min_steps": "use train.max_steps",
    "min_epochs": "use train.max_steps",
    "max_time": "use train.max_steps or train.max_images",
    "gradient_clip_val": "use train.grad_clip (clipping that is correct under mixed precision)",
    "gradient_clip_algorithm": "use train.grad_clip",
    "accumulate_grad_batches": "not supported for GANs; raise train.batch_size instead",
    "logger": "use the top-level logger: section",
    "callbacks": "use the top-level callbacks: section",
    "enable_checkpointing": "ganforge writes checkpoints itself (train.checkpoint_every_n_steps)",
    "default_root_dir": "use the top-level root_dir",
    "use_distributed_sampler": "ganforge shards data itself so that resume is exact",
    "log_every_n_steps": "use train.log_every_n_steps",
    "plugins": "not configurable from YAML",
}


# -- loading ------------------------------------------------------------------------------------------


def default_config_text() -> str:
    """The embedded default experiment (the lecture's ring of 8 Gaussians)."""
    return resources.files("ganforge").joinpath("configs", DEFAULT_CONFIG).read_text()


def load_yaml(path: Optional[Union[str, Path]]) -> tuple[dict[str, Any], str]:
    """Read a YAML config; returns ``(data, source)``. ``None`` reads the embedded default."""
    if path is None:
        text, source = default_config_text(), f"<default {DEFAULT_CONFIG}>"
    else:
        p = Path(path)
        if not p.exists():
            hint = ""
            builtin = resources.files("ganforge").joinpath("configs", p.name)
            if builtin.is_file():
                hint = f" A built-in config of that name exists: use `-c {p.name}` from any directory by its name only."
            elif "/" not in str(path) and "\\" not in str(path):  # a bare name: meant a built-in one?
                names = builtin_config_names()
                close = difflib.get_close_matches(p.name.removesuffix(".yaml").removesuffix(".yml"), names, n=1,
                                                  cutoff=0.5)
                hint = (f" Did you mean `-c {close[0]}`?" if close else "") + f" Built-in configs: {', '.join(names)}."
            raise ConfigError(f"config file '{path}' not found (relative to {Path.cwd()}).{hint}")
        if p.is_dir():
            raise ConfigError(f"config path '{path}' is a directory; give a YAML file.")
        raw, source = p.read_bytes(), str(p)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise ConfigError(f"{source}: not a UTF-8 text file (byte {exc.start} on line {line} is "
                              f"0x{raw[exc.start]:02x}); save the config as UTF-8.") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}:{exc.line}: duplicate key '{exc.key}' (first set on line {exc.first}); "
                          "YAML would silently keep the last one — remove one of them.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}.")
    return data, source


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently).

    Keys brought in by a ``<<: *anchor`` merge may be overridden; that is what merges are for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep)


def builtin_config_names() -> list[str]:
    """The configs shipped inside the package, usable as ``-c <name>`` from any directory."""
    return sorted(f.name.rsplit(".", 1)[0] for f in resources.files("ganforge").joinpath("configs").iterdir()
                  if f.name.endswith((".yaml", ".yml")))


def merge_configs(base: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """``later`` over ``base``: mappings merge key by key, anything else (lists included) is replaced.

    A component section whose ``name`` changes is replaced as a whole, as with a ``<section>.name=``
    override: the earlier file's parameters belonged to the other component.
    """
    out = copy.deepcopy(base)
    for key, value in later.items():
        old = out.get(key)
        if isinstance(old, str) and isinstance(value, dict):  # `objective: wgan` shorthand → mapping
            old = {"name": old}
        renamed = isinstance(old, dict) and isinstance(value, dict) and "name" in old and "name" in value \
            and old["name"] != value["name"]
        if isinstance(old, dict) and isinstance(value, dict) and not renamed:
            out[key] = merge_configs(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config_path(path: Optional[str]) -> Optional[str]:
    """A path as given, or the name of a built-in config (``ring8.yaml``, ``grid25``)."""
    if path is None or Path(path).exists():
        return path
    name = path if path.endswith((".yaml", ".yml")) else f"{path}.yaml"
    builtin = resources.files("ganforge").joinpath("configs", name)
    if "/" not in path and builtin.is_file():
        return str(builtin)
    return path


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key.path=value (e.g. train.max_steps=500).")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}': empty key segment in '{key}'.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides.

    Setting a component's ``name`` to another component replaces that section: the YAML's
    parameters belonged to the old component. Name overrides are applied first, so parameter
    overrides given on the same command line land on the new component.
    """
    data = copy.deepcopy(data)
    parsed = [(item, *parse_override(item)) for item in overrides]
    parsed.sort(key=lambda t: 0 if t[1][-1] == "name" else 1)
    for item, parts, value in parsed:
        if parts[-1] == "name" and len(parts) >= 2:
            parent = _lookup(data, parts[:-1])
            old = parent.get("name") if isinstance(parent, dict) else parent if isinstance(parent, str) else None
            if old is not None and old != value:
                _assign(data, parts[:-1], {"name": value})
                continue
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                idx = _list_index(node, part, parts[: i + 1], allow_append=True)
                if idx == len(node):
                    node.append([] if nxt.isdigit() else {})
                elif isinstance(node[idx], str):  # `- mode-coverage` shorthand → mapping
                    node[idx] = {"name": node[idx]}
                node = node[idx]
                continue
            if part not in node or node[part] is None or isinstance(node[part], str):
                if isinstance(node.get(part), str):  # `objective: wgan` shorthand → mapping
                    node[part] = {"name": node[part]}
                else:
                    node[part] = [] if nxt.isdigit() else {}
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            idx = _list_index(node, last, parts, allow_append=True)
            if idx == len(node):
                node.append(value)
            else:
                node[idx] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override '{item}': '{'.'.join(parts[:-1])}' is {node!r}, not a section.")
    return data


def _lookup(data: Any, parts: list[str]) -> Any:
    node = data
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _assign(data: Any, parts: list[str], value: Any) -> None:
    parent = _lookup(data, parts[:-1])
    key = parts[-1]
    if isinstance(parent, list):
        parent[int(key)] = value
    else:
        parent[key] = value


def _list_index(node: list, part: str, parts: list[str], allow_append: bool = False) -> int:
    if not part.isdigit():
        raise ConfigError(f"override key '{'.'.join(parts)}': '{part}' must be a list index (0, 1, ...).")
    idx = int(part)
    if idx > len(node) or (idx == len(node) and not allow_append):
        raise ConfigError(f"override key '{'.'.join(parts)}': index {idx} out of range (list has {len(node)} items).")
    return idx


# -- validation ---------------------------------------------------------------------------------------


def _component_spec(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping like {{name: ..., ...}} or a name, got {value!r}.")
    return dict(value)


def _resolve_component(reg: Registry, kind: str, value: Any, path: str) -> dict[str, Any]:
    return reg.resolve(kind, _component_spec(value, path), path)  # nested components included


METRIC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def metric_id(entry: dict[str, Any]) -> str:
    """A resolved ``metrics.list`` entry's id: its ``id``, or its name. Summary keys, CSV columns,
    W&B keys and ``ganforge evaluate``'s output use it."""
    return str(entry.get("id") or entry["name"])


def _resolve_metrics(reg: Registry, items: list) -> list[dict[str, Any]]:
    """Each entry resolved like a component, plus its optional ``id`` (written only when it differs
    from the name); two entries with one id are an error naming both."""
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"metrics.list[{i}]"
        spec = dict(_component_spec(item, path))
        given_id = spec.pop("id", None)
        if given_id is not None and not (isinstance(given_id, str) and METRIC_ID.match(given_id)):
            raise ConfigError(f"{path}.id: {given_id!r} is not a valid id; use letters, digits, '-', '_' or '.' "
                              "(e.g. fid-inception), it names the metric's summary keys and CSV columns.")
        entry = _resolve_component(reg, "metric", spec, path)
        if given_id is not None and given_id != entry["name"]:
            entry = {"name": entry["name"], "id": given_id, **{k: v for k, v in entry.items() if k != "name"}}
        key = metric_id(entry)
        if key in seen:
            j = seen[key]
            raise ConfigError(f"{path}: metric id '{key}' is already used by metrics.list[{j}] "
                              f"({items[j].get('name') if isinstance(items[j], dict) else items[j]!r}); give one of "
                              f"them a distinct id, e.g. {{name: {entry['name']}, id: {entry['name']}-{i}, ...}}.")
        seen[key] = i
        out.append(entry)
    return out


def _resolve_section(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {value!r}.")
    comp = SECTIONS[name]
    params = validate_params(comp, value, name)
    return plain({p.name: params.get(p.name, p.default) for p in comp.parameters()})


def _resolve_loggers(reg: Registry, value: Any) -> list[dict[str, Any]]:
    """``logger:``: one logger (a name or ``{name: ..., <params>}``) or a list of them, each resolved
    through the registry like a component. :data:`RECORD_LOGGER` is added to a list without it
    (``logger: wandb`` resolves to ``[csv, wandb]``); ``logger: []`` turns all logging off."""
    if value is None or value is False:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        path = f"logger[{i}]" if isinstance(value, list) else "logger"
        full = _resolve_component(reg, "logger", item, path)
        if any(o["name"] == full["name"] for o in out):
            raise ConfigError(f"{path}: logger '{full['name']}' is given twice; keep one entry.")
        out.append(full)
    if out and not any(o["name"] == RECORD_LOGGER for o in out):
        out.insert(0, _resolve_component(reg, "logger", RECORD_LOGGER, "logger"))
    return out


def _resolve_trainer(value: Any) -> dict[str, Any]:
    import lightning

    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"trainer: expected a mapping of lightning.Trainer arguments, got {value!r}.")
    sig = inspect.signature(lightning.Trainer.__init__)
    valid = [n for n in sig.parameters if n != "self"]
    import typing

    try:
        hints = typing.get_type_hints(lightning.Trainer.__init__)
    except Exception:  # noqa: BLE001
        hints = {}
    out: dict[str, Any] = {"accelerator": "auto", "devices": 1}
    for key, v in value.items():
        if key in TRAINER_MANAGED:
            raise ConfigError(f"trainer.{key}: managed by ganforge — {TRAINER_MANAGED[key]}.")
        if key not in sig.parameters or key == "self":
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"trainer.{key}: not an argument of lightning.Trainer.{hint}")
        ann = hints.get(key, inspect.Parameter.empty)
        converted = coerce(v, ann)
        if converted is NO:
            raise ConfigError(f"trainer.{key}: expected {type_name(ann)}, got {v!r} ({type(v).__name__}).")
        out[key] = plain(converted)  # what Lightning gets is what config.yaml says (1 for a float field: 1.0)
    devices = out.get("devices")
    from ganforge.run.launch import requested_devices

    count = requested_devices(devices)  # one reading of trainer.devices (also check_hardware, the world size)
    if (isinstance(count, int) and (count == 0 or count < -1)) or count == []:
        raise ConfigError(f"trainer.devices: must be >= 1, -1 (all) or 'auto', got {devices!r}.")
    nodes = out.get("num_nodes", 1)
    if isinstance(nodes, int) and nodes < 1:
        raise ConfigError(f"trainer.num_nodes: must be >= 1, got {nodes!r}.")
    return out


def check_hardware(trainer: dict[str, Any]) -> None:
    """Fail before the trainer is built when this machine lacks what ``trainer.accelerator`` and
    ``trainer.devices`` ask for: :func:`ganforge.run.hardware.check_trainer` (the one hardware probe).

    Not part of :func:`resolve`: a config is prepared on one machine and run on another.
    """
    from ganforge.run.hardware import check_trainer

    check_trainer(trainer)


def resolve(data: dict[str, Any], registry: Registry, source: str = "<config>") -> dict[str, Any]:
    """Validate a raw config mapping and return it with every default filled in."""
    unknown = [k for k in data if k not in TOP_LEVEL]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(TOP_LEVEL), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: unknown section '{key}'.{hint} Sections: {', '.join(sorted(TOP_LEVEL))}.")
    cfg: dict[str, Any] = {}
    name = data.get("name", "run")
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        # runs go to <root_dir>/<name>/: a path here would file the run elsewhere (`..`, `/abs`, `a/b`)
        raise ConfigError(f"name: {name!r} is not a run name: it must be one directory name under root_dir, "
                          "not a path (no '/' or '\\', not '.' or '..'); e.g. name: ring8-hinge. "
                          "To write runs elsewhere set root_dir.")
    cfg["name"] = name
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected int, got {seed!r} ({type(seed).__name__}).")
    if violated(seed, (SEED_RANGE,)):
        raise ConfigError(f"seed: must be {SEED_RANGE.text} (numpy's seed range), got {seed}.")
    cfg["seed"] = seed
    root = data.get("root_dir", "runs")
    if not isinstance(root, str):
        raise ConfigError(f"root_dir: expected a path string, got {root!r}.")
    cfg["root_dir"] = root
    for section in COMPONENT_SECTIONS:
        if section not in data:
            raise ConfigError(f"{source}: missing section '{section}' (e.g. {section}: {{name: ...}}); "
                              f"registered: {', '.join(registry.names(section)) or 'none'}.")
        cfg[section] = _resolve_component(registry, section, data[section], section)
    optim = data.get("optim") or {}
    if not isinstance(optim, dict):
        raise ConfigError(f"optim: expected a mapping with 'generator' and 'discriminator', got {optim!r}.")
    extra = [k for k in optim if k not in ("generator", "discriminator")]
    if extra:
        raise ConfigError(f"optim.{extra[0]}: unknown key; optim has 'generator' and 'discriminator'.")
    schema = _schema(optimizer_section, "optimizer")
    cfg["optim"] = {}
    for net in ("generator", "discriminator"):
        given = optim.get(net) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"optim.{net}: expected a mapping like {{lr: 2e-4}}, got {given!r}.")
        params = validate_params(schema, given, f"optim.{net}")
        cfg["optim"][net] = plain({p.name: params.get(p.name, p.default) for p in schema.parameters()})
    for section in SECTIONS:
        cfg[section] = _resolve_section(section, data.get(section))
    t = cfg["train"]
    if t["lr_decay"] != "none" and t["max_steps"] is None:
        raise ConfigError("train.lr_decay: needs train.max_steps (the decay ends there); set it, or lr_decay: none.")
    if t["max_steps"] is None and t["max_images"] is None:
        raise ConfigError("train: set train.max_steps (generator steps) or train.max_images; both are null.")
    samples = cfg["samples"]
    if samples["every_n_steps"] == 0:  # decided here, so config.yaml says when pictures are drawn
        samples["every_n_steps"] = (cfg["metrics"]["every_n_steps"]
                                    or (max(1, t["max_steps"] // 10) if t["max_steps"] else 1000))
    cfg["metrics"]["list"] = _resolve_metrics(registry, cfg["metrics"]["list"])
    callbacks = data.get("callbacks") or []
    if not isinstance(callbacks, list):
        raise ConfigError(f"callbacks: expected a list of {{name: ...}} entries, got {callbacks!r}.")
    cfg["callbacks"] = [_resolve_component(registry, "callback", c, f"callbacks[{i}]") for i, c in enumerate(callbacks)]
    cfg["logger"] = _resolve_loggers(registry, data.get("logger", RECORD_LOGGER))
    cfg["trainer"] = _resolve_trainer(data.get("trainer"))
    return cfg


def load_config(path: Union[None, str, list[str]], overrides: list[str], registry: Registry) -> dict[str, Any]:
    """Read ``path`` (or the embedded default), apply overrides and validate.

    Several paths (``-c base.yaml -c mine.yaml``) are merged in order by :func:`merge_configs`:
    later files override earlier ones.
    """
    paths = path if isinstance(path, list) else [path]
    data: dict[str, Any] = {}
    sources = []
    for p in paths or [None]:
        more, source = load_yaml(resolve_config_path(p))
        data = merge_configs(data, more)
        sources.append(source)
    data = apply_overrides(data, overrides)
    return docs_shortened(resolve(data, registry, " + ".join(sources)))


DOCS_MAX_STEPS_ENV = "GANFORGE_DOCS_MAX_STEPS"


def docs_shortened(cfg: dict[str, Any]) -> dict[str, Any]:
    """A testing aid, off unless ``GANFORGE_DOCS_MAX_STEPS=N`` is set (tests/test_docs_commands.py runs every
    documented command with it): ``train.max_steps`` at most N (``max_images`` at most N batches) and every
    metric's ``num_samples`` at most 10·N. Announced on stderr; config.yaml records the shortened values."""
    raw = os.environ.get(DOCS_MAX_STEPS_ENV, "")
    if not raw.strip():
        return cfg
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{DOCS_MAX_STEPS_ENV}={raw!r}: expected a positive number of generator steps (e.g. 20); "
                          f"unset it for real training.")
    t = cfg["train"]
    t["max_steps"] = n if t["max_steps"] is None else min(t["max_steps"], n)
    if t["max_images"] is not None:
        t["max_images"] = min(t["max_images"], n * t["batch_size"])
    for m in cfg["metrics"]["list"]:
        if isinstance(m.get("num_samples"), int):
            m["num_samples"] = min(m["num_samples"], 10 * n)
    print(f"ganforge: note: {DOCS_MAX_STEPS_ENV}={n} (a testing aid): train.max_steps {t['max_steps']}, "
          f"metrics' num_samples at most {10 * n}", file=sys.stderr, flush=True)
    return cfg


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists of scalars (``betas: [0.5, 0.999]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> Any:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump(cfg: dict[str, Any]) -> str:
    return yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
