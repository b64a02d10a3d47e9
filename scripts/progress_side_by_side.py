"""Several runs' progress pictures in one PNG: one row per run, one column per step.

Usage::

    .venv/bin/python scripts/progress_side_by_side.py --out ring.png \\
        "plain GAN=runs/ring8-collapse/version_0" "PacGAN2=runs/ring8-pacgan2/version_0" \\
        [--steps 0,1000,2000,3000,4000 | --columns 5] [--scale 0.75]

Each ``LABEL=RUN_DIR`` contributes its ``samples/step_<n>.png`` panels (the pictures of which
``samples/progress.png`` is made: points against the true modes, with the metric values of that
step as a caption), so the collapsed and the cured generator can be read side by side at the same
steps, as in the lecture's figure. Without ``--steps`` the columns are the steps every run has.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ganforge.reporting.imaging import BG, TEXT, save_png

STEP_FILE = re.compile(r"step_(\d+)\.png$")


def step_pictures(run: Path) -> dict[int, Path]:
    """``{step: path}`` of a run directory's ``samples/step_<n>.png``."""
    samples = run / "samples"
    if not samples.is_dir():
        raise SystemExit(f"progress_side_by_side: {run}: no samples/ folder; give a run directory "
                         f"(e.g. runs/ring8-collapse/version_0) of a run that wrote sample pictures")
    found = {int(m.group(1)): p for p in samples.iterdir() if (m := STEP_FILE.search(p.name))}
    if not found:
        raise SystemExit(f"progress_side_by_side: {samples}: no step_<n>.png pictures")
    return found


def parse_run(arg: str) -> tuple[str, Path]:
    label, sep, path = arg.rpartition("=")  # the last "=": a label may hold one ("k = 5")
    if not sep or not label or not path:
        raise SystemExit(f"progress_side_by_side: {arg!r}: give LABEL=RUN_DIR, e.g. 'PacGAN2=runs/x/version_0'")
    return label, Path(path)


def compose(rows: list[tuple[str, dict[int, Path]]], steps: list[int], scale: float) -> Image.Image:
    try:
        font = ImageFont.load_default(size=20)
    except TypeError:  # older Pillow
        font = ImageFont.load_default()
    gap, label_h = 8, 30
    panels = [[Image.open(pics[s]).convert("RGB") for s in steps] for _, pics in rows]
    w = max(int(p.width * scale) for row in panels for p in row)
    h = max(int(p.height * scale) for row in panels for p in row)
    out = Image.new("RGB", (len(steps) * (w + gap) - gap, len(rows) * (label_h + h + gap) - gap), BG)
    draw = ImageDraw.Draw(out)
    for r, ((label, _), row) in enumerate(zip(rows, panels)):
        y = r * (label_h + h + gap)
        draw.text((4, y + 4), label, fill=TEXT, font=font)
        for c, p in enumerate(row):
            out.paste(p.resize((int(p.width * scale), int(p.height * scale)), Image.LANCZOS),
                      (c * (w + gap), y + label_h))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--steps", help="comma-separated steps (default: those every run has)")
    ap.add_argument("--columns", type=int, help="N of the steps every run has, evenly spaced (first and last kept)")
    ap.add_argument("--scale", type=float, default=0.75, help="panel size relative to the run's pictures")
    args = ap.parse_args(argv)
    if not 0 < args.scale <= 4:
        raise SystemExit(f"progress_side_by_side: --scale {args.scale}: give a factor in (0, 4]")
    rows = [(label, step_pictures(run)) for label, run in map(parse_run, args.runs)]
    common = sorted(set.intersection(*(set(pics) for _, pics in rows)))
    if args.steps:
        try:
            steps = [int(s) for s in args.steps.split(",")]
        except ValueError:
            raise SystemExit(f"progress_side_by_side: --steps {args.steps!r}: give integers, e.g. 0,1000,2000")
        missing = [s for s in steps if s not in common]
        if missing:
            raise SystemExit(f"progress_side_by_side: --steps {args.steps}: step(s) {missing} are not pictured "
                             f"in every run; steps every run has: {common}")
    else:
        steps = common
    if args.columns is not None:
        if args.steps or args.columns < 2:
            raise SystemExit(f"progress_side_by_side: --columns {args.columns}: give a count >= 2, and not "
                             f"together with --steps")
        n = min(args.columns, len(steps))
        steps = [steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)] if n > 1 else steps
    if not steps:
        raise SystemExit("progress_side_by_side: the runs have no pictured step in common")
    save_png(compose(rows, steps, args.scale), args.out)
    print(f"{args.out}: {len(rows)} runs x {len(steps)} steps ({', '.join(map(str, steps))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
