"""The ``ganforge`` command line: fit, config show, plugins (and, with image support, sample, evaluate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from ganforge.components import ComponentError
from ganforge.plugins import ConfigError, PluginError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None,
                   help="YAML config (a path, or a built-in name such as ring8 or grid25); default: ring8")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="dotted overrides, e.g. objective.name=wgan-gp train.max_steps=500")
    p.add_argument("--strict-plugins", action="store_true", help="fail when any plugin fails to load")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ganforge", description="Train and evaluate GANs on PyTorch Lightning.")
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
    plugins.add_argument("--strict-plugins", action="store_true")
    report = sub.add_parser("report", help="write one self-contained HTML page for one or several runs")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (runs/ring8/version_0), or a folder of runs (runs/ring8: all versions)")
    report.add_argument("--out", default=None, metavar="FILE.html",
                        help="where to write the page; default RUN_DIR/report.html for one run, "
                             "./ganforge-report.html for several")
    from ganforge import cli_images

    cli_images.add_parsers(sub)
    return ap


def _registry(args: argparse.Namespace):
    from ganforge.plugins import get_registry

    if getattr(args, "strict_plugins", False):
        return get_registry(strict=True)  # not via os.environ: it would outlive this call
    return get_registry()


def cmd_fit(args: argparse.Namespace) -> int:
    from ganforge.stopping import SIGNALS, Interrupted, exit_code, report

    SIGNALS.reset()
    restore = SIGNALS.install()  # Ctrl-C/SIGTERM: from here on a message, never a traceback
    try:
        from ganforge.config import load_config
        from ganforge.run import fit

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
    cmd = ["ganforge", "fit"] + (["-c", args.config] if args.config else []) + list(args.overrides)
    return cmd + ["--no-progress"] * bool(args.no_progress) + ["--strict-plugins"] * bool(args.strict_plugins)


def cmd_config_show(args: argparse.Namespace) -> int:
    from ganforge.config import dump, load_config

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
                               "module": rec.module, "components": comps})
    for f in reg.failures:
        out["failed"].append({"name": f.name, "distribution": f.distribution, "version": f.version, "error": f.error})
    return out


def cmd_plugins(args: argparse.Namespace) -> int:
    from ganforge.plugins import load_registry

    reg = load_registry(warn=False, strict=True if args.strict_plugins else None)
    report = plugins_report(reg)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for p in report["plugins"]:
        print(f"{p['name']}  ({p['distribution']} {p['version']}, module {p['module']})")
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
    from ganforge.report import write_report

    out = write_report(args.runs, args.out)
    print(f"ganforge: report written to {out}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Overrides may come before or after options (`fit --no-progress a.b=1`): take every
    # `key=value` token that is not an option or an option's value out of argv first.
    overrides: list[str] = []
    if argv and argv[0] in ("fit", "config"):
        rest: list[str] = []
        takes_value = {"-c", "--config", "--resume"}
        for i, tok in enumerate(argv):
            prev = argv[i - 1] if i else ""
            if "=" in tok and not tok.startswith("-") and prev not in takes_value:
                overrides.append(tok)
            else:
                rest.append(tok)
        argv = rest
    args = parser().parse_args(argv)
    if hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + overrides
    try:
        if args.command == "fit":
            return cmd_fit(args)
        if args.command == "config":
            return cmd_config_show(args)
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "report":
            return cmd_report(args)
        from ganforge import cli_images

        return cli_images.run(args)
    except (ConfigError, PluginError, ComponentError) as exc:
        print(f"ganforge: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ganforge.module import NonFiniteError

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
