"""The ring of 8 Gaussians with and without the ``constrained`` objective's ``norm-range`` constraint.

The prior knowledge: every sample lies on the ring, ``‖x‖`` within ``--width`` σ of the radius (``ring8``:
radius 1, σ 0.01; the default 3σ gives ``[0.97, 1.03]``). Trains ``configs/ring8.yaml`` (hinge, EMA) for ``--steps`` generator steps per
seed, plain (hinge) and as ``constrained`` (hinge + ``norm-range`` on that annulus) per ``--weights``, and prints per run and
as mean ± sd: the fraction of 2,500 generated (EMA) samples outside the annulus, modes covered and the
high-quality fraction (mode-coverage, PacGAN's protocol), and the wall time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/constrained_ring.py [--seeds 0 1 2] [--steps 1500] [--weights 1 100 1000] [--width 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

os.environ.setdefault("GANFORGE_PROGRESS", "0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 100.0, 1000.0],
                    help="the norm-range penalty's weights (one constrained run per weight and seed)")
    ap.add_argument("--samples", type=int, default=2500, help="generated samples for the annulus fraction")
    ap.add_argument("--width", type=float, default=3.0,
                    help="the annulus (constraint and count) is the radius ± this many mode standard deviations")
    ap.add_argument("--no-plain", action="store_true", help="constrained runs only")
    ap.add_argument("--penalty-only", action="store_true",
                    help="no GAN: train ring8's generator on the norm-range penalty alone (weight: the first of "
                         "--weights) with its Adam settings, and print the fraction still outside the annulus")
    ap.add_argument("--override", nargs="*", default=[], help="config overrides for every run, e.g. "
                    "optim.generator.betas=[0.5,0.9]")
    args = ap.parse_args()
    import torch

    from ganforge.registry.registry import get_registry
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    reg = get_registry()
    base = load_config("ring8", [], reg)
    radius, std = base["dataset"]["radius"], base["dataset"]["std"]
    low, high = radius - args.width * std, radius + args.width * std
    if args.penalty_only:
        return penalty_only(base, low, high, args)
    variants = {} if args.no_plain else {"hinge": []}
    for w in args.weights:
        variants[f"constrained, weight {w:g}"] = [
            "objective.name=constrained", f"objective.base={base['objective']['name']}",
            f"objective.constraints=[{{name: norm-range, low: {low:g}, high: {high:g}, weight: {w:g}}}]"]
    print(f"ring8 (radius {radius:g}, std {std:g}), annulus [{low:g}, {high:g}], {args.steps} generator steps, "
          f"overrides {args.override}, "
          f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}", flush=True)
    rows: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as d:
        for seed in args.seeds:
            for label, extra in variants.items():
                run = [f"seed={seed}", f"root_dir={d}", "logger=[]", f"train.max_steps={args.steps}",
                       f"metrics.every_n_steps={args.steps}", "samples.every_n_steps=0", *args.override, *extra]
                cfg = load_config("ring8", run, reg)
                t = time.time()
                with contextlib.redirect_stdout(io.StringIO()):
                    out = fit(cfg, progress=False, registry=reg)
                wall = time.time() - t
                x = out["module"].sample(args.samples, seed=12345).double()
                r = x.norm(dim=1)
                outside = float(((r < low) | (r > high)).double().mean())
                v = out["summary"]["metrics"]["mode-coverage"]["values"]
                rows[label].append((100 * outside, v["modes"], 100 * v["high_quality"], wall))
                print(f"seed {seed} {label:<26} outside annulus {100 * outside:5.1f} %, modes {v['modes']:.0f}/8, "
                      f"high-quality {100 * v['high_quality']:5.1f} %, {wall:.1f} s", flush=True)
    sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
    print(f"\n| {len(args.seeds)} seeds, {args.steps} steps | outside annulus % | modes | high-quality % | s per run |")
    print("|---|---|---|---|---|")
    for label, rs in rows.items():
        cols = list(zip(*rs))
        print(f"| {label} | " + " | ".join(f"{statistics.mean(c):.1f} ± {sd(c):.1f}" for c in cols) + " |")


def penalty_only(cfg: dict, low: float, high: float, args: argparse.Namespace) -> None:
    """How close the penalty alone gets: ring8's generator and G optimizer, no discriminator."""
    import torch

    from ganforge import DataInfo, build_component
    from ganforge.loop.module import make_optimizer

    info = DataInfo(sample_shape=(2,), name="gaussian-ring")
    ring = build_component("constraint", "norm-range", {"low": low, "high": high}, info=info)
    for seed in args.seeds:
        torch.manual_seed(seed)
        G = build_component("generator", cfg["generator"]["name"],
                            {k: v for k, v in cfg["generator"].items() if k != "name"}, info=info, seed=seed)
        opt = make_optimizer(G.parameters(), cfg["optim"]["generator"])
        for _ in range(args.steps):
            p = ring.penalty(G(torch.randn(cfg["train"]["batch_size"], *G.latent_shape)), None)
            opt.zero_grad()
            (args.weights[0] * p.mean()).backward()
            opt.step()
        with torch.no_grad():
            r = G(torch.randn(args.samples, *G.latent_shape, generator=torch.Generator().manual_seed(12345))).norm(dim=1)
        print(f"seed {seed} penalty only, weight {args.weights[0]:g}, {args.steps} steps: outside annulus "
              f"{100 * float(((r < low) | (r > high)).double().mean()):.1f} %", flush=True)


if __name__ == "__main__":
    main()
