"""The ``ganforge`` command line: fit, config show, plugins (and, with image support, sample, evaluate)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from ganforge import __version__

# No torch (nor anything that imports it) at module level: `--help` and `--version` answer at once, and
# main() sets OpenMP's environment before torch is imported (OpenMP reads it once, at start-up).


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=None, metavar="CONFIG",
                   help="YAML config (a path, or a built-in name such as ring8 or grid25); default: ring8. "
                        "Repeatable: later files override earlier ones (mappings merged, lists replaced)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="dotted overrides, e.g. objective.name=wgan-gp train.max_steps=500; "
                        "--key.path=value (as W&B sweep agents pass them) works too")
    p.add_argument("--strict-plugins", action="store_true", help="fail when any plugin fails to load")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ganforge", description="Train and evaluate GANs on PyTorch Lightning.")
    ap.add_argument("--version", action="version", version=f"ganforge {__version__}",
                    help="print ganforge's version and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train a GAN (default experiment: the ring of 8 Gaussians)")
    _common(fit)
    fit.add_argument("--resume", default=None, metavar="CKPT|auto",
                     help="resume from a checkpoint, or 'auto' for the newest last.ckpt of this run name")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config (all defaults filled in)")
    _common(show)
    plugins = sub.add_parser("plugins", help="list plugins, their components and parameters, and failures")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--strict-plugins", action="store_true",
                         help="exit with an error when any plugin fails to load (default: list the failures)")
    report = sub.add_parser("report", help="write one self-contained HTML page for one or several runs")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (runs/ring8/version_0), or a folder of runs (runs/ring8: all versions)")
    report.add_argument("--out", default=None, metavar="FILE.html",
                        help="where to write the page; default RUN_DIR/report.html for one run, "
                             "./ganforge-report.html for several")
    from ganforge.cli import sample_evaluate as cli_images

    cli_images.add_parsers(sub)
    return ap


def _registry(args: argparse.Namespace):
    from ganforge.registry.registry import get_registry

    if getattr(args, "strict_plugins", False):
        return get_registry(strict=True)  # not via os.environ: it would outlive this call
    return get_registry()


def cmd_fit(args: argparse.Namespace) -> int:
    from ganforge.run.stopping import SIGNALS, Interrupted, exit_code, report

    SIGNALS.reset()
    restore = SIGNALS.install()  # Ctrl-C/SIGTERM: from here on a message, never a traceback
    try:
        from ganforge.run.config import load_config
        from ganforge.run.runner import fit

        reg = _registry(args)
        cfg = load_config(args.config, args.overrides, reg)
        fit(cfg, resume=args.resume, progress=False if args.no_progress else None, registry=reg)
        during = SIGNALS.phase
    except Interrupted as exc:
        during = exc.during
    finally:
        restore()
    if not SIGNALS.signum:
        return 0
    if SIGNALS.rank == 0:
        resume = args.resume if args.resume not in (None, "auto") else None
        print(report(SIGNALS, during, resume and Path(resume), _fit_command(args)), file=sys.stderr, flush=True)
    return exit_code(SIGNALS.signum)


def _fit_command(args: argparse.Namespace) -> list[str]:
    """This ``ganforge fit`` command line without ``--resume`` (the interrupt message adds it)."""
    cmd = ["ganforge", "fit"] + [a for c in args.config or [] for a in ("-c", c)] + list(args.overrides)
    return cmd + ["--no-progress"] * bool(args.no_progress) + ["--strict-plugins"] * bool(args.strict_plugins)


def cmd_config_show(args: argparse.Namespace) -> int:
    from ganforge.run.config import dump, load_config

    cfg = load_config(args.config, args.overrides, _registry(args))
    sys.stdout.write(dump(cfg))
    return 0


def plugins_report(reg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"plugins": [], "failed": []}
    for rec in reg.plugins:
        comps = []
        for kind, table in reg.components.items():
            for name, comp in sorted(table.items()):
                if comp.plugin != rec.name:
                    continue
                comps.append({
                    "kind": kind, "name": name, "description": comp.description,
                    "parameters": [{"name": p.name, "type": p.type_name,
                                    "default": None if p.required else repr(p.default), "required": p.required}
                                   for p in comp.parameters()],
                })
        out["plugins"].append({"name": rec.name, "distribution": rec.distribution, "version": rec.version,
                               "module": rec.module, "api": rec.api, "components": comps})
    for f in reg.failures:
        out["failed"].append({"name": f.name, "distribution": f.distribution, "version": f.version, "error": f.error})
    return out


def cmd_plugins(args: argparse.Namespace) -> int:
    from ganforge.registry.registry import load_registry

    reg = load_registry(warn=False, strict=True if args.strict_plugins else None)
    report = plugins_report(reg)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from ganforge.contract.hookspecs import PLUGIN_API

    for p in report["plugins"]:
        api = f"plugin API {p['api']}" if p["api"] is not None else f"declares no plugin API, loaded as {PLUGIN_API}"
        print(f"{p['name']}  ({p['distribution']} {p['version']}, module {p['module']}, {api})")
        for c in p["components"]:
            print(f"  {c['kind']:<17} {c['name']:<20} {c['description']}")
            for prm in c["parameters"]:
                default = "required" if prm["required"] else f"= {prm['default']}"
                print(f"      {prm['name']}: {prm['type']} {default}")
    if report["failed"]:
        print("\nFAILED to load:")
        for f in report["failed"]:
            print(f"  {f['name']}  ({f['distribution']} {f['version']}): {f['error']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ganforge.reporting.report import write_report

    out = write_report(args.runs, args.out)
    print(f"ganforge: report written to {out}")
    return 0


def split_overrides(argv: list[str], options: set[str]) -> tuple[list[str], list[str]]:
    """``(argv without overrides, overrides)`` for a ``fit`` or ``config show`` command line.

    Overrides may come before or after options (``fit --no-progress a.b=1``): every ``key=value``
    token that is not an option's value is one. So is ``--key=value`` when ``--key`` is not one of the
    command's ``options``: W&B sweep agents pass parameters that way (``${args}``), with Python's
    spelling of values, so ``None`` there means null.
    """
    rest: list[str] = []
    overrides: list[str] = []
    takes_value = {"-c", "--config", "--resume"}
    for i, tok in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev in takes_value:
            rest.append(tok)
        elif "=" in tok and not tok.startswith("-"):
            overrides.append(tok)
        elif tok.startswith("--") and "=" in tok and tok.split("=", 1)[0] not in options:
            key, _, value = tok[2:].partition("=")
            overrides.append(f"{key}={'null' if value == 'None' else value}")
        else:
            rest.append(tok)
    return rest, overrides


def _options(ap: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The option strings of the subcommand named at the start of ``argv`` (``fit``, ``config show``)."""
    node = ap
    for word in argv[:2]:
        subs = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        node = subs[0].choices[word]
    return {o for a in node._actions for o in a.option_strings}


def main(argv: Optional[list[str]] = None) -> int:
    # Before torch is imported: OpenMP threads that wait for work sleep instead of spinning. On a busy
    # machine, spinning threads take the cores the working ones need (docs/quickstart.md, "CPU threads").
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = parser()
    overrides: list[str] = []
    if argv and argv[0] in ("fit", "config"):
        argv, overrides = split_overrides(argv, _options(ap, argv))
    args = ap.parse_args(argv)
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + overrides
    from ganforge.contract.components import ComponentError
    from ganforge.registry.errors import ConfigError, PluginError

    try:
        if args.command == "fit":
            return cmd_fit(args)
        if args.command == "config":
            return cmd_config_show(args)
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "report":
            return cmd_report(args)
        from ganforge.cli import sample_evaluate as cli_images

        return cli_images.run(args)
    except (ConfigError, PluginError, ComponentError) as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ganforge.loop.module import NonFiniteError

        if isinstance(exc, NonFiniteError):
            print(f"ganforge: error: {exc}", file=sys.stderr)
            return 1
        from ganforge.io import DiskWriteError

        disk = DiskWriteError.wrap(exc)  # full disk, read-only, no permission: one line, not a traceback
        if disk is not None:
            print(f"ganforge: error: {disk}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
