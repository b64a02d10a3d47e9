"""``ganforge report``: one self-contained HTML page for one or several runs.

The page holds loss and metric curves over generator steps (runs overlaid), the progress
pictures, each metric's final values with its protocol, the counters and timings, the resolved
config and, for several runs, the keys in which their configs differ. Figures are drawn with
matplotlib as inline SVG and pictures are embedded as data URIs, so the file can be mailed or
attached to a paper's supplementary material on its own. It reads only what a run writes
(``config.yaml``, ``metrics.csv``, ``summary.json``, ``samples/``): no checkpoint is loaded.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from ganforge.registry.errors import ConfigError
from ganforge.run.resume import flatten

COUNTERS = ("g_steps", "d_steps", "images_seen", "iterations", "skipped_steps")
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json")


@dataclass
class RunData:
    """What one run directory holds, read back as plain data."""

    path: Path
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    rows: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    pictures: list[tuple[str, bytes]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)


# -- reading runs ---------------------------------------------------------------------------------------


def _is_run(path: Path) -> bool:
    return any((path / f).is_file() for f in RUN_FILES)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories from the arguments: a run directory itself, or a folder of runs
    (``runs/ring8`` holds ``version_0``, ``version_1``, ...; ``runs`` holds run names)."""
    found: list[Path] = []
    for arg in paths:
        p = Path(arg)
        if not p.exists():
            raise ConfigError(f"report: '{arg}' does not exist (relative to {Path.cwd()}); give run directories "
                              "such as runs/ring8/version_0, or runs/ring8 for all its versions.")
        if not p.is_dir():
            raise ConfigError(f"report: '{arg}' is a file, not a run directory; give the directory that holds "
                              "config.yaml, metrics.csv and summary.json (e.g. runs/ring8/version_0).")
        if _is_run(p):
            found.append(p)
            continue
        inner = sorted({q.parent for f in RUN_FILES for q in p.glob(f"*/{f}")} |
                       {q.parent for f in RUN_FILES for q in p.glob(f"*/*/{f}")}, key=_natural)
        if not inner:
            raise ConfigError(f"report: '{arg}' holds no run (none of {', '.join(RUN_FILES)} in it or in the "
                              "folders below it); a run directory is what `ganforge fit` prints at its start.")
        found.extend(inner)
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in {u.resolve() for u in unique}:
            unique.append(p)
    return unique


def _natural(p: Path) -> tuple:
    parts = []
    for part in p.parts:
        head, _, tail = part.rpartition("_")
        parts.append((head, int(tail)) if tail.isdigit() else (part, -1))
    return tuple(parts)


def _float(text: str) -> Optional[float]:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def load_run(path: Path) -> RunData:
    """Read one run directory; a file that is missing is left empty, one that is unreadable is an error."""
    run = RunData(path=path, label=_label(path))
    cfg = path / "config.yaml"
    if cfg.is_file():
        run.config_text = _read_text(cfg)
        try:
            loaded = yaml.safe_load(run.config_text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"report: {cfg} is not valid YAML ({exc}); restore it (it is the run's resolved config, "
                              "also in checkpoints/last.ckpt) or leave that run out of the report.") from None
        run.config = loaded if isinstance(loaded, dict) else {}
    csv_path = path / "metrics.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
            for raw in csv.DictReader(f):
                row = {k: v for k, v in ((k, _float(v)) for k, v in raw.items() if k) if v is not None}
                if "step" in row:
                    run.rows.append(row)
    summary = path / "summary.json"
    if summary.is_file():
        try:
            loaded = json.loads(_read_text(summary))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"report: {summary} is not valid JSON ({exc}); ganforge writes it atomically, so it was "
                              "changed by hand: restore it, or run `ganforge evaluate` on the run's checkpoint to "
                              "recompute the final values, or leave that run out.") from None
        run.summary = loaded if isinstance(loaded, dict) else {}
    progress = path / "samples" / "progress.png"
    if progress.is_file():
        run.pictures.append(("samples/progress.png", progress.read_bytes()))
    from ganforge.run.resume import read_segments

    run.segments = [rec for rec in read_segments(path) if isinstance(rec, dict)]
    return run


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"report: {path} is not UTF-8 text (byte {exc.start}); it was not written by ganforge."
                          ) from None


# -- figures --------------------------------------------------------------------------------------------


def series_keys(runs: list[RunData]) -> list[str]:
    """The logged quantities worth a curve: losses first, then training terms, then metrics."""
    keys: list[str] = []
    for run in runs:
        for row in run.rows:
            for k in row:
                if k not in keys and k != "step" and k not in COUNTERS and not k.endswith("num_modes"):
                    keys.append(k)
    order = {"d_loss": 0, "g_loss": 1}
    return sorted(keys, key=lambda k: (order.get(k, 2 if k.startswith("train/") else 3), k))


def _series(run: RunData, key: str) -> tuple[list[float], list[float]]:
    pts = sorted({int(r["step"]): r[key] for r in run.rows if key in r}.items())
    return [p[0] for p in pts], [p[1] for p in pts]


def figure_svg(key: str, runs: list[RunData]) -> Optional[str]:
    """One curve per run of ``key`` over generator steps, as an inline SVG string."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=100)
    drawn = 0
    for run in runs:
        xs, ys = _series(run, key)
        finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if not finite:
            continue
        ax.plot([x for x, _ in finite], [y for _, y in finite], marker="o" if len(finite) < 30 else None,
                markersize=3, linewidth=1.4, label=run.label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(key, fontsize=10)
    ax.set_xlabel("generator step", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML


# -- configs --------------------------------------------------------------------------------------------


def config_differences(runs: list[RunData]) -> list[tuple[str, list[Any]]]:
    """Keys whose values differ between the runs' resolved configs (missing keys count as differing)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    missing = object()
    diffs = []
    for k in keys:
        vals = [f.get(k, missing) for f in flat]
        if any(v != vals[0] for v in vals[1:]):
            diffs.append((k, ["—" if v is missing else v for v in vals]))
    return diffs


# -- the page -------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem 2rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: .8rem; }
.figure { border: 1px solid #eee; }
.figure svg { display: block; width: 520px; height: 300px; }
img.progress { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: .8rem; max-height: 30rem; }
.protocol { font-size: .75rem; color: #555; }
.note { color: #666; font-size: .85rem; }
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.6g}"
    if isinstance(v, int):
        return f"{v:,}".replace(",", " ") if abs(v) >= 10000 else str(v)
    return str(v)


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="num"' if i >= numeric_from and isinstance(v, (int, float)) else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _metrics_section(run: RunData) -> str:
    metrics = run.summary.get("metrics") or {}
    if not metrics:
        return '<p class="note">No final metrics (no summary.json, or no metrics configured).</p>'
    parts = []
    for name, m in metrics.items():
        values = m.get("values") or {}
        protocol = m.get("protocol") or {}
        rows = [[k, v] for k, v in values.items() if not k.endswith("num_modes")]
        parts.append(f"<h3>{html.escape(name)} <span class=\"note\">(evaluated on "
                     f"{html.escape(str(m.get('generator_used', m.get('evaluated', '?'))))})</span></h3>")
        parts.append(_table(["value", "final"], rows))
        if protocol:
            items = "; ".join(f"{html.escape(str(k))}={html.escape(_fmt(v))}" for k, v in sorted(protocol.items()))
            parts.append(f'<p class="protocol">protocol: {items}</p>')
    return "\n".join(parts)


def render(runs: list[RunData], title: Optional[str] = None) -> str:
    """The whole page as one HTML string."""
    title = title or ("ganforge report — " + ", ".join(r.label for r in runs))
    body: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    # overview: counters and timings, one row per run
    rows = []
    for r in runs:
        c = r.summary.get("counters") or {}
        if not c and r.rows:
            last = max(r.rows, key=lambda row: row["step"])
            c = {k: int(last[k]) for k in COUNTERS if k in last}
        rows.append([r.label, r.config.get("name", r.summary.get("name", "?")), *[c.get(k, "—") for k in COUNTERS],
                     r.summary.get("wall_time_s", "—"), len(r.segments) or "—", str(r.path)])
    body.append("<h2>Runs</h2>")
    body.append(_table(["run", "config", *COUNTERS, "wall time (s)", "segments", "directory"], rows, numeric_from=2))

    # curves
    body.append("<h2>Curves</h2>")
    figs = [(k, figure_svg(k, runs)) for k in series_keys(runs)]
    figs = [(k, svg) for k, svg in figs if svg]
    if figs:
        body.append('<div class="figures">' + "".join(
            f'<div class="figure" data-key="{html.escape(k)}">{svg}</div>' for k, svg in figs) + "</div>")
    else:
        body.append('<p class="note">Nothing logged yet (metrics.csv is missing or empty).</p>')

    # pictures
    body.append("<h2>Progress pictures</h2>")
    any_pic = False
    for r in runs:
        for name, data in r.pictures:
            any_pic = True
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            body.append(f"<h3>{html.escape(r.label)} — {html.escape(name)}</h3>"
                        f'<img class="progress" alt="{html.escape(r.label)} {html.escape(name)}" src="{uri}">')
    if not any_pic:
        body.append('<p class="note">No samples/progress.png in these runs.</p>')

    # metrics with protocols
    body.append("<h2>Final metrics and their protocols</h2>")
    for r in runs:
        if len(runs) > 1:
            body.append(f"<h3>{html.escape(r.label)}</h3>")
        body.append(_metrics_section(r))

    # segments (resumed runs)
    if any(r.segments for r in runs):
        body.append("<h2>Segments</h2>")
        for r in runs:
            if r.segments:
                keys = sorted(set().union(*(s.keys() for s in r.segments)))
                body.append(f"<h3>{html.escape(r.label)}</h3>")
                body.append(_table(keys, [[json.dumps(s.get(k)) if isinstance(s.get(k), (dict, list)) else s.get(k)
                                           for k in keys] for s in r.segments], numeric_from=len(keys)))

    # configs
    if len(runs) > 1:
        body.append("<h2>What differs between the configs</h2>")
        diffs = config_differences(runs)
        if diffs:
            body.append(_table(["key", *[r.label for r in runs]], [[k, *vals] for k, vals in diffs],
                               numeric_from=len(runs) + 1))
        else:
            body.append('<p class="note">The resolved configs are identical.</p>')
    body.append("<h2>Resolved config</h2>")
    for r in runs:
        body.append(f"<h3>{html.escape(r.label)} — config.yaml</h3>")
        body.append(f"<pre>{html.escape(r.config_text or '(no config.yaml)')}</pre>")

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(paths: Iterable[str | Path], out: Optional[str | Path] = None) -> Path:
    """Read the runs, render the page, write it atomically; returns the path written."""
    from ganforge.io import atomic_write_text

    run_dirs = find_runs(paths)
    runs = [load_run(p) for p in run_dirs]
    if out is None:
        out = run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("ganforge-report.html")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"report: --out {out} is a directory; give a file name such as {out / 'report.html'}.")
    try:
        atomic_write_text(out, render(runs))
    except OSError as exc:
        raise ConfigError(f"report: cannot write {out} ({exc.strerror or exc}); choose another --out.") from None
    return out
