"""Mode coverage over a run, from its ``metrics.csv``: the lecture's "hopping" as numbers.

Usage: ``.venv/bin/python scripts/mode_history.py runs/ring8-collapse/version_0 [...]``

Per evaluation: modes covered, high-quality %, KL to uniform, the dominant mode and its share of
the high-quality samples, and the modes seen so far (cumulative, needs ``per_mode: true``). Then
how often the dominant mode changed. A collapsed, hopping generator covers 1 mode per evaluation
while the cumulative count grows; a healthy one covers all modes at every evaluation.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

KEY = "metrics/mode-coverage/"


def history(run: Path) -> list[dict[str, float]]:
    rows = csv.DictReader(open(run / "metrics.csv", newline=""))
    out = []
    for r in rows:
        if r.get(KEY + "modes", "") == "":
            continue
        vals = {k[len(KEY):]: float(v) for k, v in r.items() if k.startswith(KEY) and v != ""}
        vals["step"] = float(r["step"])
        out.append(vals)
    return out


def main() -> None:
    for arg in sys.argv[1:]:
        run = Path(arg)
        seen: set[str] = set()
        dominant = []
        print(f"{run}\n| step | modes | high-quality % | KL | dominant mode | its share | modes seen so far |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for e in history(run):
            seen |= {k for k, v in e.items() if k.startswith("share_") and v > 0}
            d = e.get("dominant_mode", math.nan)
            if not math.isnan(d):
                dominant.append(int(d))
            print(f"| {e['step']:.0f} | {e['modes']:.0f} | {100 * e['high_quality']:.1f} | {e['kl_uniform']:.3f} | "
                  f"{'-' if math.isnan(d) else int(d)} | {e.get('dominant_share', math.nan):.2f} | "
                  f"{len(seen) if any(k.startswith('share_') for k in e) else '?'} |")
        changes = sum(a != b for a, b in zip(dominant, dominant[1:]))
        print(f"\ndominant mode changed {changes} times in {len(dominant)} evaluations with a high-quality sample\n")


if __name__ == "__main__":
    main()
