"""Plugin loading and the component registry.

Plugins are modules named by entry points in the ``ganforge`` group. Each is imported inside
its own ``try``: a broken plugin is recorded (distribution, entry point, error) and reported by
``ganforge plugins`` and a one-line warning, while the others keep working. With
``--strict-plugins`` or ``GANFORGE_STRICT_PLUGINS=1`` a broken plugin is fatal.
``GANFORGE_DISABLE_PLUGINS=a,b`` skips entry points by name.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import os
import sys
import traceback
import types
import typing
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Callable, Iterable, Optional

import pluggy

from ganforge.contract import hookspecs
from ganforge.contract.components import INJECTED_PARAMETERS, check_component
from ganforge.registry.bounds import Constraint, violated
from ganforge.registry.bounds import split as split_constraints

ENTRY_POINT_GROUP = "ganforge"


class PluginError(Exception):
    """A plugin could not be loaded, or two plugins collide."""


class ConfigError(ValueError):
    """A configuration value is wrong. The message names the key path, the value and the fix."""


@dataclass
class Param:
    name: str
    annotation: Any
    default: Any
    required: bool
    constraints: tuple[Constraint, ...] = ()

    @property
    def type_name(self) -> str:
        text = type_name(self.annotation)
        return f"{text} ({', '.join(c.text for c in self.constraints)})" if self.constraints else text


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
            ann, constraints = split_constraints(hints.get(p.name, p.annotation))
            required = p.default is inspect.Parameter.empty
            out.append(Param(p.name, ann, None if required else p.default, required, constraints))
        return out

    def accepts_extra(self) -> bool:
        return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.factory).parameters.values())

    def injected(self) -> list[str]:
        return [n for n in inspect.signature(self.factory).parameters if n in INJECTED_PARAMETERS]


@dataclass
class PluginRecord:
    name: str
    distribution: str
    version: str
    module: str


@dataclass
class PluginFailure:
    name: str
    distribution: str
    version: str
    error: str
    traceback: str


@dataclass
class Registry:
    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in hookspecs.KINDS})
    plugins: list[PluginRecord] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str, path: str = "") -> Component:
        if kind not in self.components:
            raise ConfigError(f"unknown component kind '{kind}'; kinds are: {', '.join(self.components)}")
        table = self.components[kind]
        if name in table:
            return table[name]
        where = f"{path}: " if path else ""
        known = sorted(table)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        broken = ""
        if self.failures:
            broken = " (plugins that failed to load: " + ", ".join(f.name for f in self.failures) + "; see `ganforge plugins`)"
        raise ConfigError(
            f"{where}unknown {kind.replace('_', ' ')} '{name}'.{hint} Registered: {', '.join(known) or 'none'}{broken}."
        )

    def build(self, kind: str, spec: dict[str, Any], path: str = "", **injected: Any) -> Any:
        """Validate ``spec`` (``{"name": ..., **params}``) and call the factory.

        ``injected`` values (``info``, ``seed``) are passed to factories that declare them.
        """
        spec = dict(spec)
        path = path or kind
        if "name" not in spec:
            raise ConfigError(f"{path}: missing 'name' (one of: {', '.join(self.names(kind))})")
        comp = self.get(kind, spec.pop("name"), f"{path}.name")
        params = validate_params(comp, spec, path)
        for n in comp.injected():
            if n in injected:
                params[n] = injected[n]
        try:
            obj = comp.factory(**params)
        except ConfigError:
            raise
        except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"{path} ({kind} '{comp.name}' from {comp.provider}): {exc}") from exc
        return check_component(kind, comp.name, obj, comp.provider)


# -- parameter validation ---------------------------------------------------------------------------


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


_NO = object()


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


# -- loading ------------------------------------------------------------------------------------------


def _what(comp: Component) -> str:
    """``objective 'hinge'``, ``section 'train'``; ``the optimizer`` for an engine schema named after its kind."""
    return f"the {comp.kind}" if comp.name == comp.kind else f"{comp.kind} '{comp.name}'"


def _truthy(value: Optional[str]) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[str, md.EntryPoint] = {}
    for ep in eps:
        seen.setdefault(ep.name, ep)  # a name found twice on sys.path: the first wins, as importlib does
    return sorted(seen.values(), key=lambda e: e.name)


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    return dist.metadata["Name"] or "unknown", dist.version or "?"


def load_registry(
    strict: Optional[bool] = None,
    disabled: Optional[Iterable[str]] = None,
    extra: Iterable[tuple[str, Any]] = (),
    warn: bool = True,
) -> Registry:
    """Discover plugins and build the registry.

    Args:
        strict: Fail on the first broken plugin (default: ``GANFORGE_STRICT_PLUGINS``).
        disabled: Entry-point names to skip (default: ``GANFORGE_DISABLE_PLUGINS``, comma-separated).
        extra: ``(name, module)`` pairs registered in addition to the entry points (tests, notebooks).
        warn: Emit a one-line warning per broken plugin.
    """
    if strict is None:
        strict = _truthy(os.environ.get("GANFORGE_STRICT_PLUGINS"))
    if disabled is None:
        disabled = [s.strip() for s in os.environ.get("GANFORGE_DISABLE_PLUGINS", "").split(",") if s.strip()]
    disabled = set(disabled)

    reg = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    meta: dict[str, tuple[str, str]] = {}
    roots: dict[str, list[str]] = {}  # plugin name -> files/folders of its own code (for file:line)

    def fail(name: str, dist: str, version: str, exc: BaseException, stage: str, where: str = "") -> None:
        err = _describe(exc)
        where = where or _plugin_frame(exc, roots.get(name, []))
        if where:
            err += f" (at {where})"
        reg.failures.append(PluginFailure(name, dist, version, f"{stage}: {err}",
                                          "".join(traceback.format_exception(exc))))
        if strict:
            raise PluginError(
                f"plugin '{name}' from {dist} {version} failed to {stage}: {err}. "
                f"Fix or uninstall it (`pip uninstall {dist}`), or skip it with GANFORGE_DISABLE_PLUGINS={name}."
            ) from exc
        if warn:
            print(
                f"ganforge: warning: plugin '{name}' ({dist} {version}) failed to {stage}: {err} "
                "— skipped; `ganforge plugins` shows details.",
                file=sys.stderr,
            )

    candidates: list[tuple[str, str, str, Callable[[], Any]]] = []
    all_eps = _entry_points()
    _announce_disabled(disabled, all_eps, [n for n, _ in extra])
    for ep in all_eps:
        if ep.name in disabled:
            continue
        dist, version = _dist_of(ep)
        candidates.append((ep.name, dist, version, ep.load))
        roots[ep.name] = _module_roots(ep.module)
    for name, module in extra:
        candidates.append((name, "(registered in process)", "-", lambda m=module: m))
        roots[name] = [f for f in [getattr(module, "__file__", None)] if f]

    for name, dist, version, loader in candidates:
        try:
            module = loader()
            pm.register(module, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - even sys.exit() at import: report it, keep the others
            fail(name, dist, version, exc, "load")
            continue
        # A misspelt hook (ganforge_register_objective) would otherwise be silently ignored.
        unknown = [hc for hc in pm.get_hookcallers(module) or [] if not hc.has_spec()]
        if unknown:
            hook = unknown[0].name
            impl = next((i for i in unknown[0].get_hookimpls() if i.plugin is module), None)
            pm.unregister(module)
            close = difflib.get_close_matches(hook, list(hookspecs.KINDS.values()), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"hooks are: {', '.join(hookspecs.KINDS.values())}"
            fail(name, dist, version, PluginError(f"'{hook}' is not a ganforge hook; {hint}"),
                 "load", where=_code_location(impl.function if impl else None))
            continue
        meta[name] = (dist, version)
        reg.plugins.append(PluginRecord(name, dist, version, getattr(module, "__name__", repr(module))))

    for kind, hook_name in hookspecs.KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # pluggy lists in reverse registration order
            plugin = impl.plugin_name
            dist, version = meta.get(plugin, ("unknown", "?"))

            def register(name: str, factory: Callable[..., Any], description: str = "", *, _k=kind, _p=plugin) -> None:
                table = reg.components[_k]
                if name in table:
                    other = table[name]
                    raise PluginError(
                        f"{_k} '{name}' is registered twice: by {other.provider} and by plugin '{_p}' "
                        f"({meta.get(_p, ('unknown', '?'))[0]}). Uninstall one, or disable one with "
                        f"GANFORGE_DISABLE_PLUGINS={_p}."
                    )
                if not callable(factory):
                    raise PluginError(f"plugin '{_p}' registered {_k} '{name}' with a factory that is not callable")
                desc = description or (inspect.getdoc(factory) or "").split("\n")[0]
                comp = Component(_k, name, factory, desc, _p, *meta.get(_p, ("unknown", "?")))
                problem = schema_problem(comp)
                if problem:  # refused now, naming the plugin, rather than crashing `fit` or blaming the user
                    fail(_p, *meta.get(_p, ("unknown", "?")), PluginError(f"{_k} '{name}': {problem}"),
                         f"register {_k}s", where=_code_location(factory))
                    return
                table[name] = comp

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001
                fail(plugin, dist, version, exc, f"register {kind}s")
    return reg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    if isinstance(exc, PluginError):  # found by ganforge: the message says it all
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _module_roots(module_name: str) -> list[str]:
    """Files and folders holding a plugin's own code (its top-level package), found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module_name.split(".")[0])
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [os.path.join(p, "") for p in spec.submodule_search_locations]
    return [spec.origin] if spec.origin else []


def _plugin_frame(exc: BaseException, roots: list[str]) -> str:
    """``file:line`` of the last traceback frame in the plugin's own code (or of a syntax error)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if any(f.filename == r or (r.endswith(os.sep) and f.filename.startswith(r)) for r in roots)]
    return f"{own[-1].filename}:{own[-1].lineno}" if own else ""


def _code_location(obj: Any) -> str:
    """``file:line`` where a function or class is defined ('' when unknown)."""
    try:
        target = inspect.unwrap(obj)
        return f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}"
    except (TypeError, OSError):
        return ""


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
    for p in params:
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
_ANNOUNCED: set[tuple[str, ...]] = set()  # what _announce_disabled has said in this process


def _announce_disabled(disabled: set[str], eps: list[md.EntryPoint], extra: list[str]) -> None:
    """Say once which plugins GANFORGE_DISABLE_PLUGINS disabled: a first-party plugin with the
    components it takes away; names that match no plugin, with the known names."""
    key = tuple(sorted(disabled))
    if not disabled or key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    known = {ep.name: ep for ep in eps}
    for name in sorted(disabled & known.keys()):
        dist, _ = _dist_of(known[name])
        if dist != "ganforge":
            continue  # a third party's: not imported (it may be the broken one being skipped)
        comps = _components_of(known[name])
        what = f" ({', '.join(comps)})" if comps else ""
        print(f"ganforge: note: GANFORGE_DISABLE_PLUGINS: first-party plugin '{name}' disabled{what}; configs "
              "naming these components will not resolve.", file=sys.stderr)
    unknown = sorted(disabled - known.keys() - set(extra))
    if unknown:
        hints = [f"'{u}' (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(u, list(known), n=1)) else f"'{u}'"
                 for u in unknown]
        print(f"ganforge: warning: GANFORGE_DISABLE_PLUGINS names no installed plugin: {', '.join(hints)}; "
              f"plugins are: {', '.join(sorted(known))}.", file=sys.stderr)


def _components_of(ep: md.EntryPoint) -> list[str]:
    """``kind name`` of each component a (first-party) plugin registers, without registering them."""
    found: list[str] = []
    try:
        module = ep.load()
        for kind, hook_name in hookspecs.KINDS.items():
            fn = getattr(module, hook_name, None)
            if callable(fn):
                fn(register=lambda name, factory, description="", _k=kind: found.append(f"{_k} {name}"))
    except Exception:  # noqa: BLE001 - the note is a courtesy; loading errors are reported elsewhere
        pass
    return found


_CACHE: dict[tuple, Registry] = {}


def get_registry(refresh: bool = False, **kwargs: Any) -> Registry:
    """The process-wide registry (loaded once; ``refresh=True`` reloads)."""
    key = (
        os.environ.get("GANFORGE_STRICT_PLUGINS", ""),
        os.environ.get("GANFORGE_DISABLE_PLUGINS", ""),
        tuple(sorted(kwargs.items(), key=lambda kv: kv[0])) if kwargs else (),
    )
    if refresh or key not in _CACHE:
        _CACHE[key] = load_registry(**kwargs)
    return _CACHE[key]


def build(kind: str, spec: dict[str, Any] | str, path: str = "", **injected: Any) -> Any:
    """Build a registered component from ``{"name": ..., **params}`` (or just its name)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    return get_registry().build(kind, spec, path=path, **injected)
