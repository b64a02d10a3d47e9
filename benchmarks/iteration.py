"""Time one training iteration of ganforge against a hand-written PyTorch loop.

Same networks (built by the same plugins), same batch, same optimizers, same loss
(non-saturating), same data; measured side by side in one process, alternating repeats so
machine noise hits both alike. Prints seconds per iteration and the ratio.

    .venv/bin/python benchmarks/iteration.py [--config ring8] [--steps 300] [--repeats 3] [--threads 1]
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

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = None
        self.n = 0
        self.elapsed = 0.0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module.iterations == self.warmup:
            self.t0 = time.perf_counter()
        elif pl_module.iterations > self.warmup:
            self.n = pl_module.iterations - self.warmup
            self.elapsed = time.perf_counter() - self.t0


def ganforge_time(cfg: dict, steps: int, warmup: int) -> float:
    from ganforge.run import build_components, make_trainer

    cfg = dict(cfg, train=dict(cfg["train"], max_steps=steps + warmup, checkpoint_every_n_steps=10**9),
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


def plain_time(cfg: dict, steps: int, warmup: int) -> float:
    """The same loop written by hand: D step on real vs detached fake, G step, Adam, EMA."""
    from ganforge.module import make_optimizer
    from ganforge.plugins import get_registry

    reg = get_registry()
    torch.manual_seed(cfg["seed"])
    data = reg.build("dataset", cfg["dataset"], seed=cfg["seed"])
    G = reg.build("generator", cfg["generator"], info=data.info)
    D = reg.build("discriminator", cfg["discriminator"], info=data.info)
    G_ema = __import__("copy").deepcopy(G).requires_grad_(False)
    opt_g = make_optimizer(G.parameters(), cfg["optim"]["generator"])
    opt_d = make_optimizer(D.parameters(), cfg["optim"]["discriminator"])
    x_all = data.data if hasattr(data, "data") else torch.stack([data[i] for i in range(len(data))])
    b = cfg["train"]["batch_size"]
    latent = G.latent_shape
    beta = 0.5 ** (b / max(cfg["train"]["ema_halflife_images"] or 1e-8, 1e-8))
    t0 = None
    for it in range(steps + warmup):
        if it == warmup:
            t0 = time.perf_counter()
        real = x_all[torch.randint(len(x_all), (b,))]
        with torch.no_grad():
            fake = G(torch.randn(b, *latent))
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        g_loss = F.softplus(-D(G(torch.randn(b, *latent)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - beta)
        float(d_loss), float(g_loss)  # the logging a real loop does
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="config (default: the embedded ring8)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ganforge.config import load_config
    from ganforge.plugins import get_registry
    from ganforge.run import quiet_lightning

    quiet_lightning()
    cfg = load_config(args.config, ["objective.name=non-saturating", "logger=[]"], get_registry())
    gf, pl = [], []
    for _ in range(args.repeats):
        pl.append(plain_time(cfg, args.steps, args.warmup))
        gf.append(ganforge_time(cfg, args.steps, args.warmup))
    g, p = statistics.median(gf), statistics.median(pl)
    print(f"config {cfg['name']}: batch {cfg['train']['batch_size']}, {args.steps} iterations x {args.repeats} "
          f"repeats, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<28}{'ms/iteration (median)':>24}{'all repeats':>40}")
    print(f"{'hand-written PyTorch':<28}{p * 1e3:>24.2f}{', '.join(f'{v * 1e3:.2f}' for v in pl):>40}")
    print(f"{'ganforge (Lightning)':<28}{g * 1e3:>24.2f}{', '.join(f'{v * 1e3:.2f}' for v in gf):>40}")
    print(f"ratio ganforge / hand-written: {g / p:.2f}")


if __name__ == "__main__":
    main()
