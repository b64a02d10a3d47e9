"""ganforge: GAN training on PyTorch Lightning with plugins for every component.

This module is the public API: a plugin (first-party or third-party) imports only from ``ganforge``,
never from its submodules, which may move between releases. The names are imported on first use
(PEP 562), so ``import ganforge`` and the command line's ``--help``/``--version`` do not import torch,
and the CLI can set OpenMP's environment (``OMP_WAIT_POLICY``) before torch starts its thread pool.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping, Optional

__version__ = "0.2.0"

_LAZY = {
    # the plugin contract
    "hookimpl": "ganforge.contract.hookspecs",
    "Register": "ganforge.contract.hookspecs",
    # component protocols and the values they exchange
    "DataInfo": "ganforge.contract.components",
    "Discriminator": "ganforge.contract.components",
    "DiscriminatorFn": "ganforge.contract.components",
    "FeatureExtractor": "ganforge.contract.components",
    "GANDataset": "ganforge.contract.components",
    "GANMetric": "ganforge.contract.components",
    "GeneratorMetric": "ganforge.contract.components",
    "PictureMetric": "ganforge.contract.components",
    "GenerateFn": "ganforge.contract.components",
    "GroupingDiscriminator": "ganforge.contract.components",
    "Generator": "ganforge.contract.components",
    "LossOutput": "ganforge.contract.components",
    "NotApplicable": "ganforge.contract.components",
    "Objective": "ganforge.contract.components",
    "SummaryLogger": "ganforge.contract.components",
    "PictureLogger": "ganforge.contract.components",
    "LoggerRun": "ganforge.contract.components",
    "CallbackLogger": "ganforge.contract.components",
    "HistoryLogger": "ganforge.contract.components",
    "StatefulLogger": "ganforge.contract.components",
    "CalibratedConstraint": "ganforge.contract.components",
    "CalibratedObjective": "ganforge.contract.components",
    "Constraint": "ganforge.contract.components",
    "adversarial_logits": "ganforge.contract.components",
    "as_pair": "ganforge.contract.components",
    # the training module
    "GANModule": "ganforge.loop.module",
    # launchers: how a run was started (local, torchrun, a scheduler's job)
    "Launch": "ganforge.run.launch",
    "Launcher": "ganforge.run.launch",
    "RequeueLauncher": "ganforge.run.launch",
    "EnvironmentLauncher": "ganforge.run.launch",
    "SCHEDULER": "ganforge.run.launch",
    "PROCESS_LAUNCHER": "ganforge.run.launch",
    "FALLBACK": "ganforge.run.launch",
    # parameter ranges declared in a factory's signature: Annotated[int, Positive]
    "Finite": "ganforge.registry.bounds",
    "NonNegative": "ganforge.registry.bounds",
    "Positive": "ganforge.registry.bounds",
    "Range": "ganforge.registry.bounds",
    # a parameter naming another component (ACGAN's base objective); errors; the registry a plugin's tests build
    "ComponentRef": "ganforge.registry.schema",
    "ComponentList": "ganforge.registry.schema",
    "ConfigError": "ganforge.registry.errors",
    "load_registry": "ganforge.registry.registry",
    # files are data, never code: safe loading, hashing, the on-disk cache
    "NEVER_EXECUTES": "ganforge.io",
    "UnsafeFileError": "ganforge.io",
    "cache_dir": "ganforge.io",
    "atomic_write_text": "ganforge.io",
    "cached_torch": "ganforge.io",
    "sha256_file": "ganforge.io",
    "stable_hash": "ganforge.io",
    "torch_load_data": "ganforge.io",
    # evaluation: the engine's collectives and real-data pass, for metric authors
    "all_gather_cat": "ganforge.evaluation.distributed",
    "all_reduce_sum": "ganforge.evaluation.distributed",
    "evaluate": "ganforge.evaluation.core",
    "rank_world": "ganforge.evaluation.distributed",
    "real_statistics": "ganforge.evaluation.cache",
}

__all__ = [*_LAZY, "__version__", "build_component"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports on demand
    from ganforge.contract.components import (
        CalibratedConstraint,
        CalibratedObjective,
        Constraint,
        DataInfo,
        Discriminator,
        DiscriminatorFn,
        FeatureExtractor,
        GANDataset,
        GANMetric,
        GenerateFn,
        GeneratorMetric,
        PictureMetric,
        Generator,
        GroupingDiscriminator,
        LossOutput,
        NotApplicable,
        Objective,
        CallbackLogger,
        HistoryLogger,
        LoggerRun,
        StatefulLogger,
        PictureLogger,
        SummaryLogger,
        adversarial_logits,
        as_pair,
    )
    from ganforge.contract.hookspecs import Register, hookimpl
    from ganforge.io import (
        NEVER_EXECUTES,
        UnsafeFileError,
        atomic_write_text,
        cache_dir,
        cached_torch,
        sha256_file,
        stable_hash,
        torch_load_data,
    )
    from ganforge.evaluation.cache import real_statistics
    from ganforge.evaluation.core import evaluate
    from ganforge.evaluation.distributed import all_gather_cat, all_reduce_sum, rank_world
    from ganforge.loop.module import GANModule
    from ganforge.run.launch import (
        FALLBACK,
        PROCESS_LAUNCHER,
        SCHEDULER,
        EnvironmentLauncher,
        Launch,
        Launcher,
        RequeueLauncher,
    )
    from ganforge.registry.bounds import Finite, NonNegative, Positive, Range
    from ganforge.registry.errors import ConfigError
    from ganforge.registry.registry import load_registry
    from ganforge.registry.schema import ComponentList, ComponentRef


def build_component(
    kind: str,
    name: str,
    params: Optional[Mapping[str, Any]] = None,
    *,
    name_key: str = "",
    params_key: str = "",
    **injected: Any,
) -> Any:
    """Build a registered component inside another one (ACGAN's base objective, a metric's extractor).

    The name is looked up in the same registry as the config's components, so third-party
    components work too, and ``params`` are validated against the factory's signature.

    Args:
        kind: The component kind, e.g. ``"objective"`` or ``"feature_extractor"``.
        name: The registered name.
        params: The component's parameters (its factory's keyword arguments).
        name_key: The config key that holds ``name``, used in the error for an unknown name.
        params_key: The config key that holds ``params``, used in errors about them.
        **injected: Engine-provided values (``info``, ``seed``) passed to factories that declare them.

    Raises:
        ConfigError: Unknown name (with the closest registered names) or a bad parameter.
    """
    from ganforge.registry.registry import get_registry

    registry = get_registry()
    registry.get(kind, name, path=name_key)  # unknown name: one line naming name_key, with did-you-mean
    return registry.build(kind, {"name": name, **dict(params or {})}, path=params_key or kind, **injected)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
