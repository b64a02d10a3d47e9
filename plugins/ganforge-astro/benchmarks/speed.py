"""Images per second: the toy simulator (with cleaning and Hillas) vs a generator, on this machine.

    OMP_NUM_THREADS=1 python plugins/ganforge-astro/benchmarks/speed.py [--batch 500 --repeats 5]

The generator is an untrained one as ``configs/iact-cgan.yaml``'s ``generator`` section builds it (its
speed does not depend on its weights; ``--generator-width`` overrides the width); for a trained
checkpoint, the metric does the same measurement:
``ganforge evaluate runs/.../last.ckpt --metrics generation-speed``. Both use
:mod:`ganforge_astro.speed`: the generator's time includes decoding to pixels in photoelectrons
(cartesian → hexagonal, inverse amplitude map), the simulator's includes cleaning and the Hillas
parametrization (also reported alone). One untimed warm-up round, then ``--repeats`` timed rounds;
each rate is the median over rounds. Reference: the TAIGA-IACT GAN, ~400 images/s (GRID'2021).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch
import yaml
from ganforge import build_component

from ganforge_astro.speed import simulator_for, speed_values, time_generator, time_simulator
from ganforge_astro.toy import iact_toy


CONFIG = Path(__file__).resolve().parents[1] / "configs" / "iact-cgan.yaml"


def generator_spec(width: Optional[int]) -> dict:
    """The ``generator`` section of the iact-cgan config (``width`` replaced when given)."""
    spec = dict(yaml.safe_load(CONFIG.read_text())["generator"])
    if width is not None:  # the base generator's width when the config turns a base generator's images
        if "base_params" in spec:
            spec["base_params"] = dict(spec["base_params"], width=width)
        else:
            spec["width"] = width
    return spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100, help="simulated events per round")
    ap.add_argument("--batch", type=int, default=500, help="generated images per round (one batch)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds of each side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--generator-width", type=int, default=None, help="override the config generator's width")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = iact_toy(num_samples=args.batch, seed=0)  # the conditions the generator is given
    sim, _ = simulator_for(ds.camera, ds.info.protocol)
    simulator = time_simulator(sim, args.events, args.repeats, seed=1)

    spec = generator_spec(args.generator_width)
    g = build_component("generator", spec.pop("name"), spec, info=ds.info)
    g.eval()

    @torch.no_grad()
    def generate(n: int) -> torch.Tensor:
        return g(torch.randn(n, *g.latent_shape), ds.y[torch.arange(n) % len(ds)])

    generator = time_generator(generate, ds.camera.decode, args.batch, args.repeats)
    out = {**speed_values(generator, simulator), "simulation_only_images_per_s": simulator["simulation_images_per_s"],
           "generator": generator_spec(args.generator_width), "threads": torch.get_num_threads(), "batch": args.batch, "events_per_round": args.events,
           "repeats": args.repeats}
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
