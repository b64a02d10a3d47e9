"""Pictures of IACT images in their true hexagonal layout (ctapipe's ``CameraDisplay``, matplotlib Agg).

* :func:`real_vs_generated`: one row per (particle, energy bin), real images on the left, then those
  of each generated set (one run, or several runs side by side) with conditions in the same bin;
* :func:`hillas_overlay`: the Hillas-parameter histograms of real and generated images overlaid.

During training the ``hillas`` metric draws both at every evaluation (``pictures: true``, its
default) into ``<run>/samples/<metric id>/`` and the engine hands them to every picture logger (W&B
logs them as images); see :meth:`ganforge_astro.metrics.HillasMetric.draw_pictures`.

From the command line, for samples written by ``ganforge sample`` (``samples.npz`` with ``x`` and ``y``)::

    python -m ganforge_astro.pictures --samples out/samples.npz --out out/ [--real-seed 0 --real-num 2000]
    python -m ganforge_astro.pictures --samples out/samples.npz --out out/ --real-file data.npz
    python -m ganforge_astro.pictures --samples a/samples.npz --label plain \\
        --samples b/samples.npz --label constrained --out cmp/

With several ``--samples`` (e.g. a run without and one with the ``constrained`` objective) each run
gets its own columns in ``cameras.png`` and its own histogram in ``hillas.png``. The real images come
from ``iact-toy`` (with ``--real-seed``/``--real-num``) or ``iact-file``; their camera is the one the
samples are decoded with.

Speed: ``CameraDisplay`` redraws the whole figure (``fig.canvas.draw()``) whenever its image, limits
or norm change (its norm setter does so even with ``autoupdate=False``), so a grid of ``n`` cameras
costs ``n²`` camera draws: a 6 × 6 grid took 150 s. While the displays are built the figure's
``canvas.draw`` is a no-op (:func:`_no_redraw`); ``savefig`` renders once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ganforge_astro.dataset import ENERGY_COL, PARTICLE_COL
from ganforge_astro.physics import PARAMETERS, UNITS, Cleaning, energy_edges, hillas_rows_with_conditions, survived

#: A generated set: ``(label, pe images (N, n_pixels), conditions y (N, ...))``.
Generated = tuple[str, np.ndarray, np.ndarray]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _no_redraw(fig: Any) -> Iterator[None]:
    """``fig.canvas.draw`` does nothing inside (see the module docstring); ``savefig`` still renders."""
    fig.canvas.draw = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del fig.canvas.draw  # the class's method again


def real_vs_generated(camera: Any, real_pe: np.ndarray, real_y: np.ndarray, generated: Sequence[Generated],
                      path: Path, energy_bins: int = 3, per_side: int = 3, seed: int = 0,
                      columns: Optional[tuple[int, int]] = None, title: str = "") -> Path:
    """PNG grid: rows = (particle, energy bin); ``per_side`` real images, then ``per_side`` of each generated set.

    Args:
        camera: The :class:`ganforge_astro.camera.CartesianCamera` (its ctapipe geometry draws the pixels).
        real_pe: Real pixel images in photoelectrons; ``real_y`` their conditions.
        generated: ``(label, pe, y)`` per generated set (one per run compared).
        path: The PNG to write.
        energy_bins: Equal-population bins of the real log10 E (rows per particle type).
        per_side: Images per set and row (picked at random in the bin, seeded with ``seed``).
        columns: Columns of log10 E and the particle class in ``y`` (default: the dataset's layout).
        title: A line above the grid (e.g. the generator step).
    """
    e_col, p_col = columns or (ENERGY_COL, PARTICLE_COL)
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    sets = [("real", np.asarray(real_pe), np.asarray(real_y))] + [(lab, np.asarray(pe), np.asarray(y))
                                                                  for lab, pe, y in generated]
    edges = energy_edges(sets[0][2][:, e_col], energy_bins)
    particles = [p for p in (0, 1) if np.any(sets[0][2][:, p_col] == p)]
    rows = [(p, k) for p in particles for k in range(energy_bins)]
    ncols = len(sets) * per_side
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.2 * ncols, 2.3 * len(rows)), squeeze=False)
    with _no_redraw(fig):
        _fill(camera, axes, rows, sets, edges, per_side, rng, e_col, p_col)
    names = " | ".join(label for label, _, _ in sets)
    fig.suptitle(f"{title + chr(10) if title else ''}{names} (column groups) per particle and energy bin; "
                 "photoelectrons", fontsize=9)
    # fixed margins: tight_layout measures all the axes (about a second for a grid of this size)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.85 / fig.get_figheight(), wspace=0.05,
                        hspace=0.3)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fill(camera: Any, axes: Any, rows: list[tuple[int, int]], sets: list[Generated], edges: np.ndarray,
          per_side: int, rng: np.random.Generator, e_col: int, p_col: int) -> None:
    """One ``CameraDisplay`` per picked image: row (particle, energy bin), column group per set."""
    from ctapipe.visualization import CameraDisplay

    for r, (p, k) in enumerate(rows):
        for side, (label, pe, y) in enumerate(sets):
            e = y[:, e_col] if len(y) else np.zeros(0)
            inside = np.flatnonzero((y[:, p_col] == p) & (e >= edges[k]) & (e < edges[k + 1])) if len(y) else []
            pick = rng.choice(inside, size=min(per_side, len(inside)), replace=False) if len(inside) else []
            for c in range(per_side):
                ax = axes[r, side * per_side + c]
                ax.set_axis_off()
                if c >= len(pick):
                    continue
                i = int(pick[c])
                disp = CameraDisplay(camera.geometry, image=np.asarray(pe[i], dtype=float), ax=ax, title="",
                                     autoupdate=False)
                disp.cmap = "inferno"
                disp.set_limits_minmax(0, max(10.0, float(np.max(pe[i]))))
                for text in list(ax.texts):  # the frame name ("Unknown Frame" for a geometry built here)
                    text.remove()
                ax.set_title(f"{label} {'γ' if p == 0 else 'p'} E={10 ** y[i, e_col]:.1f} TeV", fontsize=7)


def hillas_overlay(real_rows: np.ndarray, generated: Sequence[tuple[str, np.ndarray]], path: Path,
                   title: str = "") -> Path:
    """PNG: one histogram per Hillas parameter, real and each generated set (images that survived cleaning).

    ``real_rows`` and each set's rows come from :func:`ganforge_astro.physics.hillas_rows_with_conditions`.
    """
    plt = _pyplot()
    n = len(PARAMETERS)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3 * ((n + 1) // 2), 5.5))
    sets = [("real", np.asarray(real_rows))] + [(lab, np.asarray(rows)) for lab, rows in generated]
    sets = [(lab, rows[survived(rows[:, :n])]) for lab, rows in sets]
    for j, (p, ax) in enumerate(zip(PARAMETERS, axes.ravel())):
        both = np.concatenate([rows[:, j] for _, rows in sets])
        lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) else (0.0, 0.0)
        bins = np.linspace(lo, hi, 30) if hi > lo else 30  # a constant parameter (leakage 0): default bins
        for label, rows in sets:
            if len(rows):  # a generator whose images all fail cleaning has no histogram
                ax.hist(rows[:, j], bins=bins, density=True, histtype="step", label=f"{label} ({len(rows)})")
        ax.set_xlabel(f"{p} [{UNITS[p]}]" if UNITS[p] else p, fontsize=8)
    axes.ravel()[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _read_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise SystemExit(f"--samples {path}: no such file; give a samples.npz written by `ganforge sample`")
    with np.load(path, allow_pickle=False) as f:
        if "x" not in f.files or "y" not in f.files:
            raise SystemExit(f"--samples {path}: needs arrays x and y (a conditional model's `ganforge sample` "
                             f"output); it has {f.files}")
        x, y = f["x"], f["y"]
        meta = json.loads(str(f["ganforge"])) if "ganforge" in f.files else {}
    if meta.get("units") == "file":
        raise SystemExit(f"--samples {path}: samples are in file units; expected training units (iact datasets)")
    return x, y


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description="hexagonal camera pictures of ganforge samples vs real IACT images")
    ap.add_argument("--samples", type=Path, required=True, action="append",
                    help="samples.npz written by `ganforge sample`; repeat to compare runs side by side")
    ap.add_argument("--label", action="append", default=None,
                    help="a name per --samples, in the same order (default: generated, or run 1, run 2, ...)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--real-file", type=Path, default=None, help="real images from an iact-file (.npz / DL1 .h5)")
    ap.add_argument("--real-seed", type=int, default=0, help="iact-toy seed of the real images")
    ap.add_argument("--real-num", type=int, default=2000, help="iact-toy events of the real images")
    ap.add_argument("--energy-bins", type=int, default=3, help="rows per particle type")
    ap.add_argument("--per-side", type=int, default=3, help="real and generated images per row and set")
    args = ap.parse_args(argv)
    labels = args.label or (["generated"] if len(args.samples) == 1
                            else [f"run {i + 1}" for i in range(len(args.samples))])
    if len(labels) != len(args.samples):
        raise SystemExit(f"--label given {len(labels)} times for {len(args.samples)} --samples; give one per "
                         "--samples, or none")
    runs = [_read_samples(p) for p in args.samples]  # before the (slow) real images: bad paths fail fast
    if args.real_file is not None:
        from ganforge_astro.files import iact_file

        real = iact_file(str(args.real_file))
    else:
        from ganforge_astro.toy import iact_toy

        real = iact_toy(num_samples=args.real_num, seed=args.real_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    real_y = real.y.numpy().astype(np.float64)
    gen = [(lab, real.camera.decode(x.astype(np.float64)), y.astype(np.float64)) for lab, (x, y) in zip(labels, runs)]
    a = real_vs_generated(real.camera, real.pe, real_y, gen, args.out / "cameras.png",
                          energy_bins=args.energy_bins, per_side=args.per_side)
    cleaning = Cleaning()
    b = hillas_overlay(hillas_rows_with_conditions(real.camera, real.pe, real_y, cleaning),
                       [(lab, hillas_rows_with_conditions(real.camera, pe, y, cleaning)) for lab, pe, y in gen],
                       args.out / "hillas.png")
    print(f"ganforge-astro: wrote {a} and {b}")


if __name__ == "__main__":
    main()
