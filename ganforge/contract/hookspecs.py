"""The plugin contract: one hook per component kind.

Every hook receives a ``register`` callable::

    register(name: str, factory: Callable[..., Any], description: str = "")

``name`` is the kebab-case name users write in configs (``objective.name: wgan-gp``).
``factory`` builds the component; its typed signature *is* the component's parameter
schema: config validation, defaults, ``ganforge plugins`` and the docs all read it.
Parameters the engine supplies itself (never written in a config) are listed in
:data:`ganforge.contract.components.INJECTED_PARAMETERS`.

A plugin is a module named by an entry point in the ``ganforge`` group whose functions
are decorated with :data:`hookimpl`. First-party components are loaded the same way.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "ganforge"

PLUGIN_API = 2
"""The plugin API this engine speaks. A plugin module declares the one it was built for with a
module-level ``GANFORGE_PLUGIN_API = 2``; the registry refuses another number by name (the
plugin is listed by ``ganforge plugins`` with the fix), and loads a plugin that declares nothing
as if it said ``PLUGIN_API``, with a warning. ganforge 0.1 spoke API 1 (implicitly)."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def ganforge_register_generators(register: Register) -> None:
    """Register generator factories returning :class:`ganforge.contract.components.Generator` modules.

    A generator is an ``nn.Module`` with ``forward(z, y=None) -> x`` and a ``latent_shape`` tuple;
    it may define ``regularization_loss()``. Factories may declare ``info`` (the dataset's
    :class:`ganforge.contract.components.DataInfo`) and ``seed``.
    """


@hookspec
def ganforge_register_discriminators(register: Register) -> None:
    """Register discriminator factories returning ``nn.Module``\\ s with ``forward(x, y=None) -> logits``.

    The logits have shape ``(N,)`` or ``(N, 1)``; a discriminator may return ``(logits, aux)`` with
    auxiliary outputs such as class logits (AC-GAN).
    """


@hookspec
def ganforge_register_objectives(register: Register) -> None:
    """Register objective factories returning :class:`ganforge.contract.components.Objective` instances.

    An objective has ``discriminator_loss(d, real, fake, y)`` and ``generator_loss(d, real, fake, y)``
    returning a :class:`ganforge.contract.components.LossOutput` ``(loss, logs)``, and the attributes
    ``n_critic``, ``needs_double_backward`` and ``weight_clip`` that tell the engine how to train it.
    """


@hookspec
def ganforge_register_constraints(register: Register) -> None:
    """Register constraint factories returning :class:`ganforge.contract.components.Constraint` objects.

    A constraint has ``penalty(fake, y)``: a per-sample penalty ``(N,)``, ``>= 0``, exactly 0 where the
    sample satisfies it, differentiable in ``fake``; the ``constrained`` objective adds
    ``weight · mean(penalty)`` to the generator's loss. A
    :class:`ganforge.contract.components.CalibratedConstraint` also has ``calibrate(x, y)``,
    ``state_dict()`` and ``load_state_dict(state)``: measured once on the training data at the start
    of a fresh fit, saved with the run. Factories may declare ``info``.
    """


@hookspec
def ganforge_register_datasets(register: Register) -> None:
    """Register dataset factories returning a :class:`ganforge.contract.components.GANDataset`.

    A map-style dataset with an ``info`` attribute of type :class:`ganforge.contract.components.DataInfo`:
    sample shape, classes or condition dimensions, and for synthetic data the true modes.
    """


@hookspec
def ganforge_register_metrics(register: Register) -> None:
    """Register metric factories returning :class:`ganforge.contract.components.GANMetric` instances."""


@hookspec
def ganforge_register_feature_extractors(register: Register) -> None:
    """Register feature-extractor factories returning :class:`ganforge.contract.components.FeatureExtractor` modules.

    An ``nn.Module`` mapping samples to feature vectors, with ``name``, ``feature_dim`` and
    ``weights_sha256`` (so every number computed on its features can say which weights made them).
    """


@hookspec
def ganforge_register_callbacks(register: Register) -> None:
    """Register factories returning ``lightning.Callback`` instances (enabled with ``callbacks:`` in a config).

    With the data on the device a Lightning batch may hold several training iterations
    (``train.iterations_per_batch``, default 16; a batch always ends on logging, checkpoint, evaluation
    and picture steps). A callback that implements ``on_train_batch_start`` or ``on_train_batch_end``
    gets one iteration per batch unless its class (or instance) sets ``handles_iteration_chunks = True``;
    declare it when the hook reads the module's counters (``g_steps``, ``iterations``) rather than
    assuming one step per call. To act on every iteration regardless, wrap ``GANModule.iteration(batch)``.
    """


@hookspec
def ganforge_register_loggers(register: Register) -> None:
    """Register logger factories returning ``lightning.pytorch.loggers.Logger`` instances (``logger:`` in a config).

    A factory declares ``run`` to receive :class:`ganforge.contract.components.LoggerRun`; optional
    capabilities (final summary, extra callbacks, history cut on resume, resumable state) are the
    logger protocols in :mod:`ganforge.contract.components`.
    """


@hookspec
def ganforge_register_launchers(register: Register) -> None:
    """Register launcher factories (no parameters) returning :class:`ganforge.run.launch.Launcher` objects.

    A launcher recognises how ganforge was started (a scheduler's job, torchrun, a plain run) from the
    environment and returns a :class:`ganforge.run.launch.Launch`: the run directory rule, the logger
    run id, requeue support. Launchers are tried by ``priority`` (higher first, then name); the
    first-party ``local`` always matches and goes last.
    """


KINDS: dict[str, str] = {
    # component kind -> hook name
    "generator": "ganforge_register_generators",
    "discriminator": "ganforge_register_discriminators",
    "objective": "ganforge_register_objectives",
    "constraint": "ganforge_register_constraints",
    "dataset": "ganforge_register_datasets",
    "metric": "ganforge_register_metrics",
    "feature_extractor": "ganforge_register_feature_extractors",
    "callback": "ganforge_register_callbacks",
    "launcher": "ganforge_register_launchers",
    "logger": "ganforge_register_loggers",
}

__all__ = ["hookimpl", "hookspec", "KINDS", "PLUGIN_API", "PROJECT", "Register"]
