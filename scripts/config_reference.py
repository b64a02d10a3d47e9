"""Generate docs/config.md from the code: the engine's section schemas and every registered
component's signature. `python scripts/config_reference.py > docs/config.md`; a test checks that
the committed file is current."""

from __future__ import annotations

import inspect
import sys

from ganforge.run import config as C
from ganforge.registry.registry import load_registry
from ganforge.registry.schema import Component


def _param_rows(comp: Component) -> list[str]:
    doc = inspect.getdoc(comp.factory) or ""
    descr: dict[str, str] = {}
    if "Args:" in doc:
        current = None
        for line in doc.split("Args:", 1)[1].splitlines():
            s = line.strip()
            if not s:
                continue
            head, sep, rest = s.partition(":")
            if sep and " " not in head and line.startswith("    ") and not line.startswith("        "):
                current = head
                descr[current] = rest.strip()
            elif current:
                descr[current] += " " + s
    rows = []
    for p in comp.parameters():
        default = "*required*" if p.required else f"`{p.default!r}`"
        cells = [f"`{p.name}`", f"`{p.type_name}`", default, descr.get(p.name, "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def main() -> str:
    out = ["# Config reference", "",
           "Generated from the code by `python scripts/config_reference.py` (a test keeps it current).",
           "A config is YAML with these sections; any key can be overridden on the command line as",
           "`section.key=value`. `ganforge config show -c NAME` prints a config with every default filled in.", "",
           "## Top level", "",
           "| key | type | default | meaning |", "|---|---|---|---|",
           "| `name` | `str` | `'run'` | run name: the directory `runs/<name>/` |",
           "| `seed` | `int` | `0` | seeds weights, data and noise (noise per rank and iteration) |",
           "| `root_dir` | `str` | `'runs'` | where run directories go |",
           "| `dataset`, `generator`, `discriminator`, `objective` | component | *required* | `{name: <registered>, <params>}` (below) |",
           "| `optim` | mapping | | `generator:` and `discriminator:` optimizer settings |",
           "| `train` | mapping | | the training loop |",
           "| `metrics` | mapping | | evaluation |",
           "| `samples` | mapping | | sample pictures |",
           "| `logger` | logger or list | `csv` | `{name: <registered>, <params>}` or a name (below); `csv` is always added to a list without it (`wandb` → `[csv, wandb]`); `[]`: none |",
           "| `callbacks` | list | `[]` | extra callbacks registered by plugins, `{name: ..., <params>}` |",
           "| `trainer` | mapping | `{accelerator: auto, devices: 1}` | arguments of `lightning.Trainer` (validated against its signature) |",
           ""]
    sections = [("train", C.train_section), ("metrics", C.metrics_section), ("samples", C.samples_section),
                ("optim.generator / optim.discriminator", C.optimizer_section)]
    for title, fn in sections:
        comp = C._schema(fn, "section")
        out += [f"## `{title}`", "", (inspect.getdoc(fn) or "").split("\n")[0], "",
                "| key | type | default | meaning |", "|---|---|---|---|", *_param_rows(comp), ""]
    out += ["## `trainer`", "", "Any argument of `lightning.Trainer` except these, which ganforge manages:", ""]
    out += [f"- `{k}`: {v}" for k, v in sorted(C.TRAINER_MANAGED.items())]
    out += ["", "With `devices` > 1 (or `num_nodes` > 1) the strategy defaults to `gan_ddp` (see cluster.md).", ""]
    reg = load_registry(warn=False)
    titles = {"dataset": "Datasets", "generator": "Generators", "discriminator": "Discriminators",
              "objective": "Objectives", "constraint": "Constraints (`objective.constraints` entries of `constrained`)",
              "metric": "Metrics (`metrics.list` entries)",
              "feature_extractor": "Feature extractors (used by metrics)", "callback": "Callbacks",
              "logger": "Loggers (`logger` entries)"}
    out += ["# Components", "", "Parameters come from each factory's typed signature. `info` (the dataset's",
            "description) and `seed` are passed by the engine and never written in a config.", ""]
    for kind, title in titles.items():
        names = reg.names(kind)
        if not names:
            continue
        out += [f"## {title}", ""]
        for name in names:
            comp = reg.get(kind, name)
            out += [f"### `{name}`", "", f"{comp.description} — *{comp.distribution}*", ""]
            rows = _param_rows(comp)
            if rows:
                out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows]
            else:
                out += ["No parameters."]
            out += [""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(main())
