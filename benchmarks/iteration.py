"""Time one training iteration of ganforge against a hand-written PyTorch loop.

Same networks (built by the same plugins), same batch, same optimizers, same loss
(non-saturating), same data; measured side by side in one process, alternating repeats so
machine noise hits both alike. Prints seconds per iteration and the ratio.

    .venv/bin/python benchmarks/iteration.py [--config ring8] [--steps 300] [--repeats 3] [--threads 1]
    .venv/bin/python benchmarks/iteration.py --model dcgan-32 --batch-size 64 --steps 100 --threads 1
    .venv/bin/python benchmarks/iteration.py --scaling [--case-seconds 4]  # ring, DCGAN-32/64 x batch 64/256
    .venv/bin/python benchmarks/iteration.py --ddp [--model ring]          # 2 gloo processes vs 1
    .venv/bin/python benchmarks/iteration.py --threads 1 --compare train.iterations_per_batch=1  # a setting vs the default
    .venv/bin/python benchmarks/iteration.py --model dcgan-32 --batch-size 64 --steps 10 --threads 1 --host-malloc default

``--model``: ``ring`` (the ring8 MLPs) or ``dcgan-32`` / ``dcgan-64`` (DCGAN with batch norm on the
bundled digits upscaled to 32x32 / 64x64, generator EMA). ``--scaling`` prints a table of time per
iteration and per image against batch size and resolution, each case side by side (the number of
timed iterations per case is chosen to last about ``--case-seconds``). ``--ddp`` times ganforge
alone with 1 process and with 2 gloo processes on the CPU at the same per-process batch and
reports the time per image of each and the efficiency ``throughput(2) / (2 x throughput(1))``.

Both loops run in one process under one malloc setting: ``--host-malloc keep`` (the default) is what
``ganforge fit`` sets at its start (``train.host_malloc``); ``default`` leaves glibc's thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import lightning as L

os.environ.setdefault("GANFORGE_PROGRESS", "0")


class Timer(L.Callback):
    """Time per iteration after a warm-up, excluding start-up and the final evaluation."""

    handles_iteration_chunks = True  # a Lightning batch may hold several iterations (train.iterations_per_batch)

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = None
        self.i0 = 0
        self.n = 0
        self.elapsed = 0.0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if self.t0 is None:
            if pl_module.iterations >= self.warmup:  # the first batch end after the warm-up
                self.t0, self.i0 = time.perf_counter(), pl_module.iterations
        else:
            self.n = pl_module.iterations - self.i0
            self.elapsed = time.perf_counter() - self.t0


def model_config(model: str, batch_size: int | None, config: str | None = None, extra: list[str] = ()) -> dict:
    """The resolved config of a benchmark model (non-saturating loss, no loggers; ``extra`` overrides last)."""
    from ganforge.run.config import load_config
    from ganforge.registry.registry import get_registry

    overrides = ["objective.name=non-saturating", "logger=[]"]
    if model.startswith("dcgan-"):
        config = "digits-dcgan"
        overrides += [f"dataset.resolution={int(model.split('-')[1])}", "dataset.labels=false",
                      "discriminator.spectral_norm=false"]  # the DCGAN of the paper: batch norm in D
    elif model != "ring":
        raise SystemExit(f"--model {model}: use ring, dcgan-32 or dcgan-64")
    if batch_size:
        overrides.append(f"train.batch_size={batch_size}")
    return load_config(config, overrides + list(extra), get_registry())


def ganforge_time(cfg: dict, steps: int, warmup: int) -> float:
    from ganforge.run.runner import build_components, make_trainer

    # The timer starts at the first batch end at or after the warm-up; a Lightning batch may hold up to
    # train.iterations_per_batch iterations, so the run goes on long enough to time at least `steps`.
    slack = cfg["train"].get("iterations_per_batch", 1) - 1
    cfg = dict(cfg, train=dict(cfg["train"], max_steps=steps + warmup + slack, checkpoint_every_n_steps=10**9),
               metrics=dict(cfg["metrics"], list=[], every_n_steps=0),
               samples=dict(cfg["samples"], every_n_steps=10**9))
    built = build_components(cfg)
    timer = Timer(warmup)
    with tempfile.TemporaryDirectory() as d:
        from pathlib import Path

        trainer = make_trainer(cfg, Path(d), built, loggers=[], progress=False)
        trainer.callbacks.append(timer)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(built.module, datamodule=built.datamodule)
    return timer.elapsed / timer.n


def hand_written_iteration(G, D, G_ema, opt_g, opt_d, real, latent, beta: float):
    """One GAN iteration as one writes it by hand (non-saturating loss): D on real vs detached fake,
    G through a frozen D, EMA lerp. Returns the detached losses; the caller decides when to read
    them. Shared with benchmarks/gpu.py, so both compare against the same loop."""
    b, device = real.shape[0], real.device
    with torch.no_grad():
        fake = G(torch.randn(b, *latent, device=device))
    d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    D.requires_grad_(False)
    g_loss = F.softplus(-D(G(torch.randn(b, *latent, device=device)))).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    D.requires_grad_(True)
    with torch.no_grad():
        for pe, p in zip(G_ema.parameters(), G.parameters()):
            pe.lerp_(p, 1 - beta)
    return d_loss.detach(), g_loss.detach()


def plain_time(cfg: dict, steps: int, warmup: int) -> float:
    """The same loop written by hand: D step on real vs detached fake, G step, Adam, EMA."""
    from ganforge.loop.module import make_optimizer
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    torch.manual_seed(cfg["seed"])
    data = reg.build("dataset", cfg["dataset"], seed=cfg["seed"])
    G = reg.build("generator", cfg["generator"], info=data.info)
    D = reg.build("discriminator", cfg["discriminator"], info=data.info)
    G_ema = __import__("copy").deepcopy(G).requires_grad_(False)
    opt_g = make_optimizer(G.parameters(), cfg["optim"]["generator"])
    opt_d = make_optimizer(D.parameters(), cfg["optim"]["discriminator"])
    from ganforge.loop.data import materialize

    x_all = materialize(data)[0]
    b = cfg["train"]["batch_size"]
    latent = G.latent_shape
    beta = 0.5 ** (b / max(cfg["train"]["ema_halflife_images"] or 1e-8, 1e-8))
    t0 = None
    for it in range(steps + warmup):
        if it == warmup:
            t0 = time.perf_counter()
        real = x_all[torch.randint(len(x_all), (b,))]
        d_loss, g_loss = hand_written_iteration(G, D, G_ema, opt_g, opt_d, real, latent, beta)
        float(d_loss), float(g_loss)  # the logging a real loop does
    return (time.perf_counter() - t0) / steps


def side_by_side(cfg: dict, steps: int, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per iteration of (hand-written, ganforge), ``repeats`` interleaved runs each."""
    gf, pl = [], []
    for _ in range(repeats):
        pl.append(plain_time(cfg, steps, warmup))
        gf.append(ganforge_time(cfg, steps, warmup))
    return pl, gf


def scaling(args: argparse.Namespace) -> None:
    """Time per iteration and per image against batch size and resolution, side by side."""
    rows = []
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            cfg = model_config(model, batch)
            warmup = 2 if model.startswith("dcgan") else 20
            est = plain_time(cfg, 2, 1)  # a rough cost, to size the timed runs
            steps = max(3, min(args.steps, int(args.case_seconds / est)))
            pl, gf = side_by_side(cfg, steps, warmup, args.repeats)
            p, g = statistics.median(pl), statistics.median(gf)
            rows.append((model, batch, steps, p, g))
            print(f"  {model:<9} batch {batch:>4}: {steps} iterations x {args.repeats}: hand-written {p * 1e3:.2f} ms, "
                  f"ganforge {g * 1e3:.2f} ms", flush=True)
    print(f"\nscaling: torch threads {torch.get_num_threads()}, median of {args.repeats} interleaved repeats")
    print(f"{'model':<10}{'batch':>6}{'iters':>7}{'hand ms/it':>12}{'ganforge ms/it':>16}{'ratio':>7}"
          f"{'hand us/img':>13}{'ganforge us/img':>17}")
    for model, batch, steps, p, g in rows:
        print(f"{model:<10}{batch:>6}{steps:>7}{p * 1e3:>12.2f}{g * 1e3:>16.2f}{g / p:>7.2f}"
              f"{p / batch * 1e6:>13.1f}{g / batch * 1e6:>17.1f}")


def ddp_worker(args: argparse.Namespace) -> None:
    """One ganforge run on ``--devices`` CPU processes (gloo); rank 0 prints a JSON line."""
    import json

    cfg = model_config(args.model, args.batch_size * args.devices)  # the same batch per process
    cfg["trainer"] = dict(cfg["trainer"], accelerator="cpu", devices=args.devices)
    warmup = args.warmup if args.warmup is not None else (2 if args.model.startswith("dcgan") else 30)
    t = ganforge_time(cfg, args.steps, warmup)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print("DDP-RESULT " + json.dumps({"devices": args.devices, "s_per_iteration": t,
                                          "global_batch": cfg["train"]["batch_size"]}), flush=True)


def ddp_efficiency(args: argparse.Namespace) -> None:
    """1 process and 2 gloo processes, alternately, each in a fresh interpreter (as ``ganforge fit``)."""
    import json
    import subprocess
    import sys

    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for n in (1, 2):
            cmd = [sys.executable, __file__, "--ddp-worker", "--devices", str(n), "--model", args.model,
                   "--host-malloc", args.host_malloc,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--threads", str(args.threads or 1)]
            if args.warmup is not None:
                cmd += ["--warmup", str(args.warmup)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads or 1))
            env.pop("GANFORGE_RUN_DIR", None)
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
            line = next((x for x in out.stdout.splitlines() if x.startswith("DDP-RESULT ")), None)
            if line is None:
                raise SystemExit(f"--ddp: the {n}-process run failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
            runs[n].append(json.loads(line.split(" ", 1)[1]))
    t = {n: statistics.median(r["s_per_iteration"] for r in rs) for n, rs in runs.items()}
    per_image = {n: t[n] / runs[n][0]["global_batch"] for n in t}
    print(f"DDP efficiency on the CPU (gloo), {args.model}, batch {args.batch_size} per process, "
          f"{args.threads or 1} thread(s) per process, {args.steps} timed iterations, median of {args.repeats}")
    print(f"{'processes':<11}{'global batch':>13}{'ms/iteration':>14}{'us/image':>10}{'images/s':>10}")
    for n in (1, 2):
        print(f"{n:<11}{runs[n][0]['global_batch']:>13}{t[n] * 1e3:>14.2f}{per_image[n] * 1e6:>10.1f}"
              f"{1 / per_image[n]:>10.0f}")
    print(f"time per image, 2 processes / 1: {per_image[2] / per_image[1]:.2f} (ideal 0.50); "
          f"efficiency throughput(2) / (2 x throughput(1)): {per_image[1] / per_image[2] / 2:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="config (default: the embedded ring8)")
    ap.add_argument("--model", default=None, help="ring, dcgan-32 or dcgan-64 (instead of --config)")
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (default: the config's)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 30; DCGAN 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--scaling", action="store_true", help="the scaling table (see the module docstring)")
    ap.add_argument("--models", default="ring,dcgan-32,dcgan-64", help="--scaling: models")
    ap.add_argument("--batches", default="64,256", help="--scaling: batch sizes")
    ap.add_argument("--case-seconds", type=float, default=4.0, help="--scaling: about this long per timed run")
    ap.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE",
                    help="also time ganforge with this config override, in the same interleaved rounds (repeatable)")
    ap.add_argument("--host-malloc", default="keep", choices=["keep", "default"],
                    help="glibc's malloc for the whole process, both loops alike: ganforge fit's default "
                         "(train.host_malloc=keep) or glibc's own thresholds")
    ap.add_argument("--ddp", action="store_true", help="DDP efficiency: 2 gloo processes vs 1")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ganforge.loop.fastpaths import keep_host_memory

    # what `ganforge fit` does at its start (train.host_malloc), here for the process: both loops run under it
    applied = keep_host_memory(args.host_malloc)
    print(f"host malloc: {args.host_malloc} ({'applied' if applied else 'glibc defaults'}), both loops", flush=True)
    from ganforge.run.config import load_config
    from ganforge.registry.registry import get_registry
    from ganforge.run.runner import quiet_lightning

    quiet_lightning()
    if args.scaling:
        return scaling(args)
    if args.ddp or args.ddp_worker:
        args.model = args.model or "ring"
        args.batch_size = args.batch_size or 64
        return ddp_worker(args) if args.ddp_worker else ddp_efficiency(args)
    overrides = ["objective.name=non-saturating", "logger=[]"]
    if args.model:
        cfg = model_config(args.model, args.batch_size, args.config)
    else:
        overrides += [f"train.batch_size={args.batch_size}"] if args.batch_size else []
        cfg = load_config(args.config, overrides, get_registry())
    warmup = args.warmup if args.warmup is not None else (2 if (args.model or "").startswith("dcgan") else 30)
    args.warmup = warmup
    variants = [("ganforge (Lightning)", cfg)]
    for kv in args.compare:  # another ganforge setting, timed in the same rounds
        if args.model:
            variants.append((f"ganforge {kv}", model_config(args.model, args.batch_size, args.config, [kv])))
        else:
            variants.append((f"ganforge {kv}", load_config(args.config, overrides + [kv], get_registry())))
    pl: list[float] = []
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(args.repeats):
        pl.append(plain_time(cfg, args.steps, args.warmup))
        for t, (_, c) in zip(times, variants):
            t.append(ganforge_time(c, args.steps, args.warmup))
    p = statistics.median(pl)
    print(f"config {cfg['name']}: batch {cfg['train']['batch_size']}, {args.steps} iterations x {args.repeats} "
          f"repeats, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<44}{'ms/iteration (median)':>24}  all repeats")
    print(f"{'hand-written PyTorch':<44}{p * 1e3:>24.2f}  {', '.join(f'{v * 1e3:.2f}' for v in pl)}")
    for (name, _), gf in zip(variants, times):
        print(f"{name:<44}{statistics.median(gf) * 1e3:>24.2f}  {', '.join(f'{v * 1e3:.2f}' for v in gf)}")
    for (name, _), gf in zip(variants, times):
        g = statistics.median(gf)
        paired = [b / a for a, b in zip(pl, gf)]  # each repeat's runs ran back to back: shared machine load
        print(f"{name}: ratio to hand-written {g / p:.2f}; paired ratios (per repeat): "
              f"{', '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f}")


if __name__ == "__main__":
    main()
