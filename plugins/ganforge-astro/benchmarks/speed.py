"""Images per second: the toy simulator (with cleaning and Hillas) vs a generator, on this machine.

    OMP_NUM_THREADS=1 python plugins/ganforge-astro/benchmarks/speed.py [--checkpoint runs/.../last.ckpt]

Without a checkpoint the generator is an untrained ``dcgan`` of the iact-cgan config's size (its speed
does not depend on its weights). Both sides produce pixel images in photoelectrons: the generator's
time includes decoding to pixels (cartesian → hexagonal, inverse amplitude map); the simulator's
includes cleaning. Hillas parametrization is timed separately (both sides need it to be analysed).
Reference: the TAIGA-IACT GAN, ~400 images/s (GRID'2021).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from ganforge import build_component

from ganforge_astro.physics import Cleaning, image_parameters
from ganforge_astro.toy import iact_toy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    ds = iact_toy(num_samples=args.events, seed=0)
    sim_s = time.perf_counter() - t0  # includes building the camera (once, a few ms)
    t0 = time.perf_counter()
    image_parameters(ds.camera.geometry, ds.pe, Cleaning(), ds.camera.focal_length_m)
    hillas_s = time.perf_counter() - t0

    g = build_component("generator", "dcgan", {"latent_dim": 64, "width": 64, "conditioning": "cbn"}, info=ds.info)
    g.eval()
    z = torch.randn(args.batch, *g.latent_shape)
    y = ds.y[torch.arange(args.batch) % len(ds)]
    with torch.no_grad():
        g(z[:8], y[:8])  # warm-up
        t0 = time.perf_counter()
        x = g(z, y)
        net_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds.camera.decode(x)
        decode_s = time.perf_counter() - t0
    out = {
        "toy_images_per_s": args.events / sim_s,
        "hillas_images_per_s": args.events / hillas_s,
        "generator_images_per_s": args.batch / (net_s + decode_s),
        "generator_network_only_images_per_s": args.batch / net_s,
        "speedup_generator_vs_toy": (sim_s / args.events) / ((net_s + decode_s) / args.batch),
        "threads": torch.get_num_threads(), "batch": args.batch, "events": args.events,
    }
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
