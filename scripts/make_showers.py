"""A stand-in for your own data: toy calorimeter showers as ``showers.npz`` (docs/quickstart.md, "Your own data").

``images``: (N, 16, 16) float32 energy deposits, a Gaussian blob at a random position whose total
and width grow with the particle energy; ``energy``: (N,) float32 in [0.1, 1.0] (arbitrary units).
No physics beyond that; it only lets the tensor-file commands of the docs run before you export yours.

Usage: python scripts/make_showers.py [OUT.npz] [--num N]
"""

from __future__ import annotations

import argparse

import numpy as np


def showers(num: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    energy = rng.uniform(0.1, 1.0, num).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = rng.normal(size / 2 - 0.5, 1.0, (num, 2)).astype(np.float32)
    width = (1.0 + 1.5 * energy)[:, None, None]
    d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    blob = np.exp(-d2 / (2 * width**2))
    images = energy[:, None, None] * blob / blob.sum(axis=(1, 2), keepdims=True) * size
    noise = rng.exponential(0.002, images.shape).astype(np.float32)
    return (images + noise).astype(np.float32), energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="showers.npz", help="the file to write (default showers.npz)")
    parser.add_argument("--num", type=int, default=2000, help="number of showers (default 2000)")
    args = parser.parse_args()
    if args.num < 2:
        parser.error(f"--num {args.num}: need at least 2 showers")
    images, energy = showers(args.num)
    np.savez(args.out, images=images, energy=energy)
    print(f"wrote {args.out}: images {images.shape} (energy deposits), energy {energy.shape} in [0.1, 1.0]")


if __name__ == "__main__":
    main()
