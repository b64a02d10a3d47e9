"""A component's parameter schema, read from its factory's typed signature.

``Component.parameters()`` turns a signature into :class:`Param` records (type, default, required,
constraints from ``Annotated``); :func:`coerce` converts a YAML value to an annotation;
:func:`validate_params` checks a config mapping against a component's schema with one error
wording; :func:`schema_problem` says why a signature cannot be a config schema (checked when a
plugin registers). A parameter that names another registered component is marked with
:class:`ComponentRef`, so config resolution checks the name and fills the nested defaults.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, Optional

from ganforge.contract.components import INJECTED_PARAMETERS
from ganforge.registry.bounds import Constraint, violated
from ganforge.registry.bounds import split as split_constraints
from ganforge.registry.errors import ConfigError


@dataclass(frozen=True)
class ComponentRef:
    """Marks a ``str`` parameter whose value is the name of another registered component.

    ``kind`` is the component kind the name is looked up in (``"objective"``, ``"feature_extractor"``).
    ``params`` optionally names the sibling ``dict`` parameter holding that component's parameters:
    config resolution validates it against the named component's schema and fills its defaults, so
    ``ganforge config show`` shows them. For example AC-GAN's::

        base: Annotated[str, ComponentRef("objective", params="base_params")] = "non-saturating"
        base_params: Optional[dict[str, Any]] = None
    """

    kind: str
    params: Optional[str] = None


@dataclass(frozen=True)
class ComponentList:
    """Marks a ``list[dict]`` parameter whose entries each name a registered component of ``kind``.

    Every entry is ``{name: <registered name>, <the wrapper's own keys>, <the component's parameters>}``.
    ``entry`` is a function whose typed signature declares the wrapper's own per-entry keys (checked
    like a factory's parameters, defaults filled in); the other keys are validated against the named
    component's schema. ``unique`` names the entry key that must differ between entries; it
    defaults to the entry's ``name``. The ``constrained`` objective's::

        def constraint_entry(weight: Annotated[float, NonNegative] = 1.0, id: Optional[str] = None): ...

        constraints: Annotated[list[dict[str, Any]], ComponentList("constraint", entry=constraint_entry,
                                                                    unique="id")] = ()
    """

    kind: str
    entry: Optional[Callable[..., Any]] = None
    unique: Optional[str] = None


@dataclass
class Param:
    name: str
    annotation: Any
    default: Any
    required: bool
    constraints: tuple[Constraint, ...] = ()
    ref: Optional[ComponentRef] = None  # the value names a component of another kind
    items: Optional[ComponentList] = None  # the value is a list of entries naming components of another kind

    @property
    def type_name(self) -> str:
        text = type_name(self.annotation)
        notes = [c.text for c in self.constraints]
        if self.ref is not None:
            notes.append(f"a registered {self.ref.kind.replace('_', ' ')}")
        if self.items is not None:
            notes.append(f"entries {{name: <registered {self.items.kind.replace('_', ' ')}>, ...}}")
        return f"{text} ({', '.join(notes)})" if notes else text


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    distribution: str
    version: str

    @property
    def provider(self) -> str:
        return f"plugin '{self.plugin}' ({self.distribution} {self.version})"

    def parameters(self) -> list[Param]:
        sig = inspect.signature(self.factory)
        # A class's own get_type_hints are its attribute annotations; its parameters are __init__'s.
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            hints = typing.get_type_hints(target, include_extras=True)  # extras: Annotated constraints
        except Exception:  # unresolved forward references: fall back to raw annotations
            hints = {}
        out = []
        for p in sig.parameters.values():
            if p.name in INJECTED_PARAMETERS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            full = hints.get(p.name, p.annotation)
            ann, constraints = split_constraints(full)
            required = p.default is inspect.Parameter.empty
            out.append(Param(p.name, ann, None if required else p.default, required, constraints, _ref_of(full),
                             _items_of(full)))
        return out

    def accepts_extra(self) -> bool:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.factory).parameters.values())

    def injected(self) -> list[str]:
        return [n for n in inspect.signature(self.factory).parameters if n in INJECTED_PARAMETERS]

def _ref_of(ann: Any) -> Optional[ComponentRef]:
    if typing.get_origin(ann) is typing.Annotated:
        return next((e for e in typing.get_args(ann)[1:] if isinstance(e, ComponentRef)), None)
    return None


def _items_of(ann: Any) -> Optional[ComponentList]:
    if typing.get_origin(ann) is typing.Annotated:
        return next((e for e in typing.get_args(ann)[1:] if isinstance(e, ComponentList)), None)
    return None


def type_name(ann: Any) -> str:
    if ann is inspect.Parameter.empty or ann is Any:
        return "any"
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return type_name(typing.get_args(ann)[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in typing.get_args(ann))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    if origin in (list, tuple, dict, typing.Sequence, typing.Mapping) or origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(ann) if a is not Ellipsis)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{args}]" if args else base
    if ann is type(None):
        return "null"
    if origin is None and isinstance(ann, type) and issubclass(ann, PurePath):
        return "path"
    return getattr(ann, "__name__", str(ann))


NO = object()
"""What :func:`coerce` returns for a value that does not fit the annotation."""
_NO = NO  # the old private name


def coerce(value: Any, ann: Any) -> Any:
    """Return ``value`` converted to ``ann`` or the sentinel ``_NO`` when it does not fit."""
    if ann is inspect.Parameter.empty or ann is Any:
        return value
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return coerce(value, args[0])
    if isinstance(ann, type) and issubclass(ann, PurePath):  # YAML writes paths as strings
        return ann(value) if isinstance(value, (str, PurePath)) and str(value) else _NO
    if origin is typing.Union or origin is types.UnionType:
        # exact-type members first, so `int | str` keeps 3 an int and "3" a str
        for a in sorted(args, key=lambda a: 0 if (isinstance(a, type) and type(value) is a) else 1):
            out = coerce(value, a)
            if out is not _NO:
                return out
        return _NO
    if origin is typing.Literal:
        return value if value in args else _NO
    if ann is type(None):
        return None if value is None else _NO
    if ann is bool:
        return value if isinstance(value, bool) else _NO
    if ann is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if ann is float:
        if isinstance(value, bool):
            return _NO
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string
            try:
                return float(value)
            except ValueError:
                return _NO
        return _NO
    if ann is str:
        return value if isinstance(value, str) else _NO
    if origin in (list, typing.Sequence, tuple) or ann in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                return _NO
            items = [coerce(v, a) for v, a in zip(value, args)]
        else:
            item_t = args[0] if args else Any
            items = [coerce(v, item_t) for v in value]
        if any(i is _NO for i in items):
            return _NO
        return tuple(items) if (origin is tuple or ann is tuple) else list(items)
    if origin in (dict, typing.Mapping) or ann is dict:
        return value if isinstance(value, dict) else _NO
    if isinstance(ann, type):
        return value if isinstance(value, ann) else _NO
    return value


def validate_params(comp: Component, given: dict[str, Any], path: str) -> dict[str, Any]:
    params = {p.name: p for p in comp.parameters()}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in params:
            if comp.accepts_extra():
                out[key] = value
                continue
            close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            valid = ", ".join(params) or "none"
            raise ConfigError(
                f"{path}.{key}: unknown parameter of {_what(comp)}.{hint} Valid parameters: {valid}."
            )
        p = params[key]
        converted = coerce(value, p.annotation)
        if converted is _NO:
            raise ConfigError(
                f"{path}.{key}: expected {type_name(p.annotation)}, got {value!r} ({type(value).__name__})."
            )
        broken = violated(converted, p.constraints)
        if broken is not None:
            raise ConfigError(f"{path}.{key}: must be {broken.describe(converted)}, got {value!r}.")
        out[key] = converted
    missing = [p.name for p in params.values() if p.required and p.name not in out]
    if missing:
        raise ConfigError(f"{path}: {_what(comp)} needs {', '.join(missing)} (no default).")
    return out


def convert_params(comp: Component, given: dict[str, Any], path: str) -> dict[str, Any]:
    """Convert already validated values (a resolved config's) to their annotations; no checks but the type."""
    params = {p.name: p for p in comp.parameters()}
    out: dict[str, Any] = {}
    for key, value in given.items():
        p = params.get(key)
        if p is None:
            if comp.accepts_extra():
                out[key] = value
                continue
            raise ConfigError(f"{path}.{key}: not a parameter of {_what(comp)} (was the resolved config edited?); "
                              f"valid parameters: {', '.join(params) or 'none'}.")
        converted = coerce(value, p.annotation)
        if converted is NO:
            raise ConfigError(f"{path}.{key}: expected {type_name(p.annotation)}, got {value!r} "
                              f"({type(value).__name__}); was the resolved config edited?")
        out[key] = converted
    return out


def _what(comp: Component) -> str:
    """``objective 'hinge'``, ``section 'train'``; ``the optimizer`` for an engine schema named after its kind."""
    return f"the {comp.kind}" if comp.name == comp.kind else f"{comp.kind} '{comp.name}'"


_SCALARS = (bool, int, float, str, type(None))


def _expressible(ann: Any) -> bool:
    """Whether a config (YAML) can give a value of type ``ann``."""
    if ann is inspect.Parameter.empty or ann is Any or isinstance(ann, (str, typing.ForwardRef)):
        return True  # unannotated, or an unresolved forward reference: accepted as is
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _expressible(args[0])
    if origin is typing.Literal:
        return all(isinstance(a, _SCALARS) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return all(_expressible(a) for a in args)
    if origin is not None:
        import collections.abc as abc

        return origin in (list, tuple, dict, abc.Sequence, abc.Mapping) and all(
            _expressible(a) for a in args if a is not Ellipsis)
    return ann in _SCALARS or ann in (list, tuple, dict) or (isinstance(ann, type) and issubclass(ann, PurePath))


def plain(obj: Any) -> Any:
    """YAML-friendly copy: tuples → lists, paths → strings."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def schema_problem(comp: Component) -> str:
    """Why a factory's signature cannot be a config schema ('' when it can).

    Every parameter must have a type YAML can write (bool, int, float, str, null, Literal, paths,
    and lists, tuples, dicts and unions of those), and every default must fit its type, its
    constraints, and survive a round trip through the resolved ``config.yaml``.
    """
    import yaml

    try:
        params = comp.parameters()
    except (TypeError, ValueError) as exc:
        return f"its signature cannot be read ({exc})"
    names = {p.name: p for p in params}
    for p in params:
        if p.ref is not None:
            from ganforge.contract.hookspecs import KINDS

            if p.ref.kind not in KINDS:
                return f"parameter '{p.name}': ComponentRef kind {p.ref.kind!r} is not a component kind ({', '.join(KINDS)})"
            if p.annotation is not str and type_name(p.annotation) not in ("str | null", "null | str"):
                return f"parameter '{p.name}': a ComponentRef names a component: annotate it str, not {p.type_name}"
            if p.ref.params is not None and p.ref.params not in names:
                return f"parameter '{p.name}': its ComponentRef's params={p.ref.params!r} is not a parameter of the factory"
        if p.items is not None:
            from ganforge.contract.hookspecs import KINDS

            if p.items.kind not in KINDS:
                return f"parameter '{p.name}': ComponentList kind {p.items.kind!r} is not a component kind ({', '.join(KINDS)})"
            if typing.get_origin(p.annotation) is not list:
                return f"parameter '{p.name}': a ComponentList is a list of entries: annotate it list[dict[str, Any]]"
        if not _expressible(p.annotation):
            return (f"parameter '{p.name}: {p.type_name}' cannot be given in a YAML config; annotate it with "
                    "bool, int, float, str, Path, Literal[...], Optional[...], or a list/tuple/dict of those")
        if p.required or isinstance(p.annotation, (str, typing.ForwardRef)):
            continue
        value = coerce(p.default, p.annotation)
        if value is _NO:
            return f"parameter '{p.name}': its default {p.default!r} is not a {p.type_name}"
        broken = violated(value, p.constraints)
        if broken is not None:
            return f"parameter '{p.name}': its default {p.default!r} is not {broken.text}"
        try:
            back = yaml.safe_load(yaml.safe_dump(plain(value)))
        except yaml.YAMLError:
            return f"parameter '{p.name}': its default {p.default!r} cannot be written to config.yaml"
        if coerce(back, p.annotation) is _NO:
            return f"parameter '{p.name}': its default {p.default!r} does not read back from config.yaml as {p.type_name}"
    return ""


__all__ = ["Component", "ComponentList", "ComponentRef", "NO", "Param", "coerce", "convert_params", "plain", "schema_problem", "type_name",
           "validate_params"]
