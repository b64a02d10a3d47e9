"""Plain vs constrained conditional GAN on toy IACT images: 3 seeds each, judged by Hillas physics.

    python plugins/ganforge-astro/benchmarks/constrained.py [--seeds 0 1 2] [--jobs 2] [--out DIR]

Trains ``configs/iact-cgan.yaml`` (plain) and ``configs/iact-cgan-constrained.yaml`` (the same plus the
``constrained`` objective with the plugin's three physics constraints) for every seed, ``--jobs``
``ganforge fit`` processes at a time with one thread each (a seed's plain and constrained runs side
by side, so their wall times share the same load). Then it prints, per run and as mean ± sd over the
seeds (sample sd), from each run's ``summary.json`` (the metrics of the last evaluation, on the EMA
generator):

* Hillas W1 per parameter (generated vs real half A) beside the real-vs-real floor (half B vs A);
* ``size-energy rel_err``: mean over (particle, energy bin) of ``|median gen size / median real − 1|``;
* acceptance of generated gammas vs real gammas and their ratio (the issue's aim: ≥ 0.95);
* the fraction of generated images that survive cleaning;
* wall time of each run;

and the generation speed on one thread after the runs: the toy simulator (with cleaning and Hillas)
against the config's generator (untrained: its speed does not depend on its weights) including the
decoding to pixels, timed by :mod:`ganforge_astro.speed` as ``benchmarks/speed.py`` and the
``generation-speed`` metric do, next to TAIGA's published ~400 images/s.

``--quick`` shrinks everything (a smoke test of this script: plugins/ganforge-astro/tests/test_constraints.py).
Extra ``--set key=value`` overrides go to both configs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIGS = {"plain": HERE.parent / "configs" / "iact-cgan.yaml",
           "constrained": HERE.parent / "configs" / "iact-cgan-constrained.yaml"}
PARAMETERS = ("log10_size", "length", "width", "r", "skewness", "kurtosis", "leakage", "alpha")
QUICK = ["train.max_steps=6", "train.batch_size=16", "dataset.num_samples=200", "train.checkpoint_every_n_steps=6",
         "metrics.every_n_steps=6", "metrics.list=[{name: hillas, num_samples: 50, num_real: 100}, "
         "{name: size-energy, num_samples: 50, num_real: 100}, {name: acceptance, num_samples: 50, num_real: 100}]"]


def fit(variant: str, seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """One ``ganforge fit`` (one thread); its final metrics and wall time."""
    name = f"{variant}-s{seed}"
    cmd = [sys.executable, "-m", "ganforge", "fit", "-c", str(CONFIGS[variant]), "--no-progress",
           f"name={name}", f"seed={seed}", f"root_dir={out}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GANFORGE_PROGRESS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}); log in {out / (name + '.log')}:\n"
                         + (proc.stdout + proc.stderr)[-2000:])
    runs = sorted((out / name).glob("version_*/summary.json"))
    summary = json.loads(runs[-1].read_text())
    return {"variant": variant, "seed": seed, "wall_s": wall, "metrics": flatten(summary["metrics"]),
            "g_steps": summary["counters"]["g_steps"]}


def flatten(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"hillas/w1/width": 0.01, ...}`` from summary.json's ``{metric: {values: {...}}}`` (or flat)."""
    out: dict[str, float] = {}
    for mname, entry in metrics.items():
        values = entry.get("values", entry) if isinstance(entry, dict) else {}
        for k, v in values.items():
            if isinstance(v, (int, float)):
                out[f"{mname}/{k}"] = float(v)
    return out


def row_values(run: dict[str, Any]) -> dict[str, float]:
    m = run["metrics"]
    out = {f"w1/{p}": m.get(f"hillas/w1/{p}", float("nan")) for p in PARAMETERS}
    out.update({f"floor/w1/{p}": m.get(f"hillas/floor/w1/{p}", float("nan")) for p in PARAMETERS})
    out.update({
        "w1_over_floor": m.get("hillas/w1_over_floor", float("nan")),
        "survived": m.get("hillas/survived", float("nan")),
        "floor/survived": m.get("hillas/floor/survived", float("nan")),
        "size_rel_err": m.get("size-energy/rel_err", float("nan")),
        "floor/size_rel_err": m.get("size-energy/floor/rel_err", float("nan")),
        "acc_generated": m.get("acceptance/generated", float("nan")),
        "acc_real": m.get("acceptance/real", float("nan")),
        "acc_ratio": m.get("acceptance/ratio", float("nan")),
        "wall_s": run["wall_s"],
    })
    return out


def mean_sd(values: list[float]) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "nan"
    if len(vals) == 1:
        return f"{vals[0]:.4g}"
    return f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g}"


def speed(config: Path, events: int, batch: int, repeats: int) -> dict[str, float]:
    """Images per second on one thread (:mod:`ganforge_astro.speed`, as ``benchmarks/speed.py`` and the
    ``generation-speed`` metric): the toy simulator with cleaning and Hillas vs the config's generator
    (untrained: its speed does not depend on its weights) with decoding to pixels."""
    import torch
    import yaml
    from ganforge import build_component

    from ganforge_astro.speed import simulator_for, speed_values, time_generator, time_simulator
    from ganforge_astro.toy import iact_toy

    torch.set_num_threads(1)
    cfg = yaml.safe_load(config.read_text())
    ds = iact_toy(num_samples=batch, seed=0)  # the conditions the generator is given
    sim, _ = simulator_for(ds.camera, ds.info.protocol)
    simulator = time_simulator(sim, events, repeats, seed=1)
    gcfg = {k: v for k, v in cfg["generator"].items() if k != "name"}
    g = build_component("generator", cfg["generator"]["name"], gcfg, info=ds.info).eval()

    @torch.no_grad()
    def generate(n: int) -> torch.Tensor:
        return g(torch.randn(n, *g.latent_shape), ds.y[torch.arange(n) % len(ds)])

    out = speed_values(time_generator(generate, ds.camera.decode, batch, repeats), simulator)
    return {**out, "threads": torch.get_num_threads(), "batch": batch, "events": events, "repeats": repeats}


def report(runs: list[dict[str, Any]], seeds: list[int]) -> str:
    lines = []
    rows = {(r["variant"], r["seed"]): row_values(r) for r in runs}
    keys = [f"w1/{p}" for p in PARAMETERS] + ["w1_over_floor", "survived", "size_rel_err", "acc_generated",
                                               "acc_real", "acc_ratio", "wall_s"]
    head = f"{'quantity':<16}" + "".join(f"{v[:5]}-s{s:<6}" for v in CONFIGS for s in seeds)
    lines += ["per seed (plain-s<k>, const-s<k>):", head]
    for k in keys:
        lines.append(f"{k:<16}" + "".join(f"{rows[(v, s)][k]:<12.4g}" for v in CONFIGS for s in seeds))
    lines += ["", f"mean ± sd over seeds {seeds}:",
              f"{'quantity':<16}{'plain':<22}{'constrained':<22}{'real-vs-real floor':<22}"]
    floors = {f"w1/{p}": f"floor/w1/{p}" for p in PARAMETERS}
    floors.update({"survived": "floor/survived", "size_rel_err": "floor/size_rel_err"})
    for k in keys:
        cells = [mean_sd([rows[(v, s)][k] for s in seeds]) for v in CONFIGS]
        floor = mean_sd([rows[(v, s)][floors[k]] for v in CONFIGS for s in seeds]) if k in floors else ""
        lines.append(f"{k:<16}{cells[0]:<22}{cells[1]:<22}{floor:<22}")
    # the aims, as ratios of the means
    mean = lambda v, k: statistics.mean([rows[(v, s)][k] for s in seeds])  # noqa: E731
    w1_ratio = {p: mean("constrained", f"w1/{p}") / mean("plain", f"w1/{p}") for p in PARAMETERS}
    lines += ["", "aims:",
              f"size-energy rel_err constrained / plain: {mean('constrained', 'size_rel_err') / mean('plain', 'size_rel_err'):.3g}"
              " (aim <= 0.5)",
              "Hillas W1 constrained / plain: " + ", ".join(f"{p} {v:.2f}" for p, v in w1_ratio.items())
              + " (aim <= 1: no worse)",
              f"acceptance ratio generated/real gammas: plain {mean('plain', 'acc_ratio'):.3f}, constrained "
              f"{mean('constrained', 'acc_ratio'):.3f} (aim >= 0.95)"]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="ganforge fit processes at a time (one thread each)")
    ap.add_argument("--out", type=Path, default=Path("runs/astro-benchmark"))
    ap.add_argument("--quick", action="store_true", help="tiny runs: a smoke test of this script")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for both configs")
    ap.add_argument("--speed-events", type=int, default=100, help="simulated events per timed round")
    ap.add_argument("--speed-batch", type=int, default=500, help="generated images per timed round")
    ap.add_argument("--speed-repeats", type=int, default=5, help="timed rounds of each side")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: need at least 1")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds {args.seeds}: each seed once")
    for cfg in CONFIGS.values():
        if not cfg.is_file():
            ap.error(f"config {cfg} is missing (the plugin's configs/ folder)")
    args.out.mkdir(parents=True, exist_ok=True)
    extra = [*(QUICK if args.quick else []), *args.set]
    if args.quick:
        args.speed_events, args.speed_batch, args.speed_repeats = 10, 40, 2
    load = os.getloadavg()
    print(f"benchmark: {len(args.seeds)} seeds x {list(CONFIGS)}, {args.jobs} processes at a time, 1 thread each; "
          f"{os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    t0 = time.perf_counter()
    jobs = [(v, s) for s in args.seeds for v in CONFIGS]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: fit(job[0], job[1], args.out, extra), jobs))
    total = time.perf_counter() - t0
    load = os.getloadavg()
    print(report(runs, args.seeds))
    print(f"\ntraining and evaluation: {total:.0f} s wall in all ({total / 60:.1f} min); load average after "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; g_steps per run {sorted({r['g_steps'] for r in runs})}")
    sp = speed(CONFIGS["plain"], args.speed_events, args.speed_batch, args.speed_repeats)
    print(f"generation speed (1 thread, medians of {sp['repeats']} rounds): toy simulator with cleaning and Hillas "
          f"{sp['simulator_images_per_s']:.0f} images/s ({sp['events']} events per round); the config's generator "
          f"with decoding to pixels {sp['generator_images_per_s']:.0f} images/s (batch {sp['batch']}; network alone "
          f"{sp['generator_network_images_per_s']:.0f}): {sp['ratio']:.1f}x the toy (aim >= 100x), "
          f"{sp['ratio_to_published']:.2f}x TAIGA's published ~400 images/s")
    (args.out / "benchmark.json").write_text(json.dumps({"runs": runs, "speed": sp, "wall_s": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
