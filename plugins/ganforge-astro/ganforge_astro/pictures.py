"""Pictures of IACT images in their true hexagonal layout (ctapipe's ``CameraDisplay``, matplotlib Agg).

* :func:`real_vs_generated`: one row per energy bin (gammas and protons in turn), real images on the
  left, generated ones with the same conditions' bin on the right;
* :func:`hillas_overlay`: the Hillas-parameter histograms of real and generated images overlaid.

From the command line, for samples written by ``ganforge sample`` (``samples.npz`` with ``x`` and ``y``)::

    python -m ganforge_astro.pictures --samples out/samples.npz --out out/ [--real-seed 0 --real-num 2000]
    python -m ganforge_astro.pictures --samples out/samples.npz --out out/ --real-file data.npz

The real images come from ``iact-toy`` (with ``--real-seed``/``--real-num``) or ``iact-file``; their
camera is the one the samples are decoded with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ganforge_astro.dataset import ENERGY_COL, PARTICLE_COL
from ganforge_astro.physics import PARAMETERS, UNITS, Cleaning, energy_edges, hillas_rows_with_conditions, survived


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def real_vs_generated(camera: Any, real_pe: np.ndarray, real_y: np.ndarray, gen_pe: np.ndarray, gen_y: np.ndarray,
                      path: Path, energy_bins: int = 3, per_side: int = 3, seed: int = 0) -> Path:
    """PNG grid: rows = (particle, energy bin), ``per_side`` real then ``per_side`` generated images."""
    from ctapipe.visualization import CameraDisplay

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    edges = energy_edges(real_y[:, ENERGY_COL], energy_bins)
    particles = [p for p in (0, 1) if np.any(real_y[:, PARTICLE_COL] == p)]
    rows = [(p, k) for p in particles for k in range(energy_bins)]
    fig, axes = plt.subplots(len(rows), 2 * per_side, figsize=(2.2 * 2 * per_side, 2.3 * len(rows)), squeeze=False)
    for r, (p, k) in enumerate(rows):
        for side, (pe, y) in enumerate(((real_pe, real_y), (gen_pe, gen_y))):
            e = y[:, ENERGY_COL]
            inside = np.flatnonzero((y[:, PARTICLE_COL] == p) & (e >= edges[k]) & (e < edges[k + 1]))
            pick = rng.choice(inside, size=min(per_side, len(inside)), replace=False) if len(inside) else []
            for c in range(per_side):
                ax = axes[r, side * per_side + c]
                ax.set_axis_off()
                if c >= len(pick):
                    continue
                i = int(pick[c])
                disp = CameraDisplay(camera.geometry, image=np.asarray(pe[i], dtype=float), ax=ax, title="")
                disp.cmap = "inferno"
                disp.set_limits_minmax(0, max(10.0, float(np.max(pe[i]))))
                ax.set_title(f"{'real' if side == 0 else 'gen'} {'γ' if p == 0 else 'p'} "
                             f"E={10 ** y[i, ENERGY_COL]:.1f} TeV", fontsize=7)
    fig.suptitle("real (left) vs generated (right) per particle and energy bin; photoelectrons", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def hillas_overlay(real_rows: np.ndarray, gen_rows: np.ndarray, path: Path) -> Path:
    """PNG: one histogram per Hillas parameter, real and generated (images that survived cleaning)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, (len(PARAMETERS) + 1) // 2, figsize=(3 * ((len(PARAMETERS) + 1) // 2), 5.5))
    ra, ga = real_rows[survived(real_rows[:, :len(PARAMETERS)])], gen_rows[survived(gen_rows[:, :len(PARAMETERS)])]
    for j, (p, ax) in enumerate(zip(PARAMETERS, axes.ravel())):
        both = np.concatenate([ra[:, j], ga[:, j]])
        lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) else (0.0, 0.0)
        bins = np.linspace(lo, hi, 30) if hi > lo else 30  # a constant parameter (leakage 0): default bins
        for rows, label in ((ra, "real"), (ga, "generated")):
            if len(rows):  # a generator whose images all fail cleaning has no histogram
                ax.hist(rows[:, j], bins=bins, density=True, histtype="step", label=f"{label} ({len(rows)})")
        ax.set_xlabel(f"{p} [{UNITS[p]}]" if UNITS[p] else p, fontsize=8)
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description="hexagonal camera pictures of ganforge samples vs real IACT images")
    ap.add_argument("--samples", type=Path, required=True, help="samples.npz written by `ganforge sample`")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--real-file", type=Path, default=None, help="real images from an iact-file (.npz / DL1 .h5)")
    ap.add_argument("--real-seed", type=int, default=0, help="iact-toy seed of the real images")
    ap.add_argument("--real-num", type=int, default=2000, help="iact-toy events of the real images")
    ap.add_argument("--energy-bins", type=int, default=3, help="rows per particle type")
    ap.add_argument("--per-side", type=int, default=3, help="real and generated images per row")
    args = ap.parse_args(argv)
    if args.real_file is not None:
        from ganforge_astro.files import iact_file

        real = iact_file(str(args.real_file))
    else:
        from ganforge_astro.toy import iact_toy

        real = iact_toy(num_samples=args.real_num, seed=args.real_seed)
    with np.load(args.samples, allow_pickle=False) as f:
        if "x" not in f.files or "y" not in f.files:
            raise SystemExit(f"{args.samples}: needs arrays x and y (a conditional model's `ganforge sample` "
                             f"output); it has {f.files}")
        x, y = f["x"], f["y"]
        meta = json.loads(str(f["ganforge"])) if "ganforge" in f.files else {}
    if meta.get("units") == "file":
        raise SystemExit(f"{args.samples}: samples are in file units; expected training units (iact datasets)")
    gen_pe = real.camera.decode(x.astype(np.float64))
    args.out.mkdir(parents=True, exist_ok=True)
    real_y = real.y.numpy().astype(np.float64)
    a = real_vs_generated(real.camera, real.pe, real_y, gen_pe, y.astype(np.float64), args.out / "cameras.png",
                          energy_bins=args.energy_bins, per_side=args.per_side)
    cleaning = Cleaning()
    b = hillas_overlay(hillas_rows_with_conditions(real.camera, real.pe, real_y, cleaning),
                       hillas_rows_with_conditions(real.camera, gen_pe, y, cleaning), args.out / "hillas.png")
    print(f"ganforge-astro: wrote {a} and {b}")


if __name__ == "__main__":
    main()
