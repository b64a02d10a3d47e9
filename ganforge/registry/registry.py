"""Plugin loading and the component registry.

Plugins are modules named by entry points in the ``ganforge`` group. Each is imported inside
its own ``try``: a broken plugin is recorded (distribution, entry point, error) and reported by
``ganforge plugins`` and a one-line warning, while the others keep working. With
``--strict-plugins`` or ``GANFORGE_STRICT_PLUGINS=1`` a broken plugin is fatal.
``GANFORGE_DISABLE_PLUGINS=a,b`` skips entry points by name. A plugin module whose
``GANFORGE_PLUGIN_API`` is not :data:`ganforge.contract.hookspecs.PLUGIN_API` is refused by name
before its hooks run; one that declares none is loaded as current, with a warning.

The parameter schema (records, coercion, validation) is :mod:`ganforge.registry.schema`; the
exceptions are :mod:`ganforge.registry.errors`.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import pluggy

from ganforge.contract import hookspecs
from ganforge.contract.components import check_component
from ganforge.contract.hookspecs import PLUGIN_API
from ganforge.registry.errors import ConfigError, PluginError
from ganforge.registry.schema import (  # noqa: F401 - re-exported for code written against 0.1's ganforge.plugins
    NO,
    Component,
    ComponentList,
    ComponentRef,
    Param,
    coerce,
    convert_params,
    plain,
    schema_problem,
    type_name,
    validate_params,
)

ENTRY_POINT_GROUP = "ganforge"

@dataclass
class PluginRecord:
    name: str
    distribution: str
    version: str
    module: str
    api: Optional[int] = None  # the GANFORGE_PLUGIN_API it declares (None: declares none, loaded as current)


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

    def resolve(self, kind: str, value: Any, path: str = "", *, written: bool = True) -> dict[str, Any]:
        """Validate a config entry (a name, or ``{"name": ..., **params}``) once and return it complete.

        Every parameter is present (defaults filled in), values are converted to their annotations
        and written YAML-friendly (:func:`plain`), and parameters marked with :class:`ComponentRef`
        are resolved through this same registry: the name must be registered for the referenced
        kind, and the sibling parameters mapping is validated against that component with its
        defaults filled in. This is what ``config.yaml`` and ``ganforge config show`` hold
        (``written=False``: the converted values themselves, paths and tuples as the factory takes them).
        """
        path = path or kind
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping like {{name: ..., ...}} or a name, got {value!r}.")
        if value.get("name") in (None, ""):
            raise ConfigError(f"{path}.name: missing; registered {kind.replace('_', ' ')}s: "
                              f"{', '.join(self.names(kind)) or 'none'}.")
        comp = self.get(kind, str(value["name"]), f"{path}.name")
        params = validate_params(comp, {k: v for k, v in value.items() if k != "name"}, path)
        full: dict[str, Any] = {"name": comp.name}
        declared = comp.parameters()
        for prm in declared:
            full[prm.name] = params.get(prm.name, prm.default)
        for k, v in params.items():  # **kwargs factories: extra keys as given
            full.setdefault(k, v)
        for prm in declared:
            if prm.ref is not None and full.get(prm.name) is not None:
                self._resolve_ref(prm, full, path)
            if prm.items is not None and full.get(prm.name) is not None:
                full[prm.name] = self._resolve_items(prm, full[prm.name], f"{path}.{prm.name}")
        return plain(full) if written else full

    def _resolve_items(self, prm: Param, entries: Any, path: str) -> list[dict[str, Any]]:
        """Each entry of a :class:`ComponentList` parameter: the wrapper's own keys (``items.entry``'s
        signature) and the named component's parameters, validated with their defaults filled in;
        ``items.unique`` (default the name) differs between entries."""
        spec = prm.items
        assert spec is not None
        entry = Component("entry", f"{spec.kind.replace('_', ' ')} entry", spec.entry or (lambda: None), "",
                          "ganforge", "ganforge", "")
        own = {p.name for p in entry.parameters()}
        out: list[dict[str, Any]] = []
        seen: dict[Any, int] = {}
        for i, item in enumerate(entries):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{where}: expected a mapping like {{name: ..., ...}}, got {item!r}.")
            keys = validate_params(entry, {k: v for k, v in item.items() if k in own}, where)
            try:
                comp = self.resolve(spec.kind, {k: v for k, v in item.items() if k not in own}, where)
            except ConfigError as exc:
                if own and "unknown parameter" in str(exc):  # name the wrapper's keys among the valid ones
                    raise ConfigError(f"{exc} The entry's own keys: {', '.join(sorted(own))}.") from None
                raise
            full = {"name": comp.pop("name")}
            for p in entry.parameters():
                full[p.name] = keys.get(p.name, p.default)
            if spec.unique is not None and full.get(spec.unique) is None:
                full[spec.unique] = full["name"]  # e.g. an id defaults to the component's name
            full.update(comp)
            key = full[spec.unique] if spec.unique is not None else full["name"]
            if key in seen:
                which = spec.unique or "name"
                raise ConfigError(
                    f"{where}.{which}: {key!r} is also the {which} of {path}[{seen[key]}]; two entries need distinct "
                    f"{'ids' if which == 'id' else which + 's'}: give one of them `{spec.unique or 'id'}: <another name>`."
                )
            seen[key] = i
            out.append(full)
        return out

    def _resolve_ref(self, prm: Param, full: dict[str, Any], path: str) -> None:
        ref = prm.ref
        target = self.get(ref.kind, str(full[prm.name]), f"{path}.{prm.name}")
        if ref.params is None:
            return
        given = full.get(ref.params) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{path}.{ref.params}: expected a mapping of {ref.kind.replace('_', ' ')} "
                              f"'{target.name}' parameters, got {given!r}.")
        nested = self.resolve(ref.kind, {**given, "name": target.name}, f"{path}.{ref.params}")
        nested.pop("name")
        full[ref.params] = nested

    def create(self, kind: str, spec: dict[str, Any], path: str = "", **injected: Any) -> Any:
        """Call the factory of an entry :meth:`resolve` returned (what ``config.yaml`` holds).

        Nothing is validated again: values are only converted from their YAML form to their
        annotations (a path string to ``Path``, a list to a tuple). A value that does not convert
        means the resolved config was edited by hand; that is reported, not guessed at.
        ``injected`` values (``info``, ``seed``) are passed to factories that declare them.
        """
        path = path or kind
        spec = dict(spec)
        comp = self.get(kind, spec.pop("name"), f"{path}.name")
        return self._call(comp, convert_params(comp, spec, path), path, injected)

    def _call(self, comp: Component, params: dict[str, Any], path: str, injected: dict[str, Any]) -> Any:
        kind = comp.kind
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

    def build(self, kind: str, spec: dict[str, Any] | str, path: str = "", **injected: Any) -> Any:
        """Validate an entry that did not come from a resolved config (:meth:`resolve`) and call its factory."""
        path = path or kind
        params = self.resolve(kind, spec, path, written=False)
        return self._call(self.get(kind, params.pop("name")), params, path, injected)


# -- loading ------------------------------------------------------------------------------------------


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
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - even sys.exit() at import: report it, keep the others
            fail(name, dist, version, exc, "load")
            continue
        api = getattr(module, API_ATTRIBUTE, None)
        if api is not None and (isinstance(api, bool) or api not in SUPPORTED_APIS):
            # refused before any of its hooks runs: it would fail inside itself, or worse, half work
            fail(name, dist, version, PluginError(api_mismatch(dist, api)), "load",
                 where=getattr(module, "__file__", "") or "")
            continue
        if api is None and warn:
            _warn_undeclared(name, dist, version, getattr(module, "__name__", name))
        try:
            pm.register(module, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
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
        reg.plugins.append(PluginRecord(name, dist, version, getattr(module, "__name__", repr(module)), api))

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
    text = f"{type(exc).__name__}: {exc}"
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and missing.split(".")[0] == "ganforge":
        # 0.1's modules (ganforge.plugins, ganforge.hookspecs, ...) moved in plugin API 2
        text += (f"; ganforge {_engine_version()} has no module '{missing}': the plugin was probably built for "
                 f"plugin API 1 (ganforge 0.1) and needs an update for API {PLUGIN_API} (CHANGELOG.md says what changed)")
    return text


# -- the plugin API version ---------------------------------------------------------------------------

API_ATTRIBUTE = "GANFORGE_PLUGIN_API"
SUPPORTED_APIS = (PLUGIN_API,)


def _engine_version() -> str:
    from ganforge import __version__

    return __version__


def api_mismatch(dist: str, api: Any) -> str:
    """The one-line reason a plugin declaring ``GANFORGE_PLUGIN_API = api`` is refused, with the fix."""
    return (f"built for ganforge plugin API {api!r}, but ganforge {_engine_version()} speaks API {PLUGIN_API}; "
            f"install a version of {dist} made for ganforge {_engine_version()} (`pip install -U {dist}`), or "
            f"its author updates it (CHANGELOG.md lists what changed) and sets {API_ATTRIBUTE} = {PLUGIN_API}")


_WARNED_UNDECLARED: set[tuple[str, str]] = set()


def _warn_undeclared(name: str, dist: str, version: str, module: str) -> None:
    """Once per process: a plugin that does not say which API it was built for is loaded as current."""
    if (name, dist) in _WARNED_UNDECLARED:
        return
    _WARNED_UNDECLARED.add((name, dist))
    print(f"ganforge: warning: plugin '{name}' ({dist} {version}) does not declare the plugin API it was built for; "
          f"loaded as API {PLUGIN_API}. Its author should add `{API_ATTRIBUTE} = {PLUGIN_API}` to module '{module}'.",
          file=sys.stderr)


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
