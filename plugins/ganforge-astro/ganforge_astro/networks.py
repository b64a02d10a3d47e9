"""``iact-rotated``: a generator that draws each image in its own frame and turns it about the camera centre.

For a point source at the camera centre (``iact-toy``'s gammas) and impact points spread evenly in
azimuth (both particle types), the distribution of camera images is symmetric under rotations about
the centre: an event's image, turned by any angle, is an equally likely image. A convolutional
generator does not know that. It must learn, for every position on the camera, a separate ellipse
pointing at the centre, and measured (docs/astro.md) it learned the centroid distance ``r`` and the
orientation (Hillas ``alpha``) slowest of all: the centroid distance of its images did not even follow
an impact-distance condition (correlation 0.23, real 0.99).

``iact-rotated`` puts the symmetry into the network. A base generator (any registered one, ``dcgan``
by default) draws an image; the image is then turned about the camera centre by an angle
``θ = 2π Φ(z₀)``, with ``z₀`` the first latent coordinate and ``Φ`` the standard normal CDF: uniform
over the circle, and a function of the noise, so sampling stays reproducible and resume-exact. The
base generator then only has to learn one frame: where along its radius an image lies and what it
looks like, not at which azimuth.

The turn works on the camera's pixels, not on the cartesian grid (whose axial layout is sheared): the
value of camera pixel ``P`` is the base image's value at the pixel nearest to ``R(−θ)·P``, or the empty
background where ``R(−θ)·P`` falls outside the camera (further than 0.75 pixel pitches from every
pixel). Nearest, not interpolated, so an image is not blurred; the gradient flows to the base pixels
that were read. Cells outside the camera hold the background.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional

import torch
from ganforge import ComponentRef, DataInfo, build_component
from torch import nn

from ganforge_astro.camera import camera_from_info
from ganforge_astro.constraints import PixelDecoder

ANGLES = ("any", "hexagonal")  # the turn: any angle, or multiples of 60 degrees (the hexagonal camera's own symmetry)
OUTSIDE_PITCHES = 0.75  # a turned pixel further than this from every camera pixel falls outside the camera


class RotatedGenerator(nn.Module):
    """A base generator's images turned about the camera centre by ``θ = 2π Φ(z₀)`` (module docstring)."""

    def __init__(self, base: nn.Module, info: DataInfo, angles: str = "any") -> None:
        super().__init__()
        owner = "generator 'iact-rotated'"
        if angles not in ANGLES:
            raise ValueError(f"{owner}: angles={angles!r}; expected one of {list(ANGLES)}")
        self.angles = angles
        camera = camera_from_info(info, owner)
        self.base = base
        self.latent_shape = tuple(base.latent_shape)
        self.decoder = PixelDecoder(camera)
        pos = self.decoder.positions
        self.register_buffer("pixels", pos.clone(), persistent=False)  # (n_pixels, 2), the camera's own units
        self.register_buffer("cells", self.decoder.cells.clone(), persistent=False)
        d = torch.cdist(pos, pos)
        d.fill_diagonal_(math.inf)
        self.pitch = float(d.min(1).values.median())
        self.background = float(camera.amplitude.background)
        self.side = camera.side
        # the six turns by multiples of 60 degrees, looked up once (angles: hexagonal): which pixel each reads
        sixths = torch.arange(6, dtype=torch.float32) * (math.pi / 3)
        with torch.no_grad():
            idx, inside = self._sources(sixths)
        self.register_buffer("hex_sources", idx, persistent=False)  # (6, n_pixels)
        self.register_buffer("hex_inside", inside, persistent=False)

    def angle(self, z: torch.Tensor) -> torch.Tensor:
        """``θ = 2π Φ(z₀)`` per sample, uniform on ``[0, 2π)`` for standard normal noise; with ``angles:
        hexagonal`` rounded down to a multiple of 60°."""
        u = torch.special.ndtr(z.reshape(len(z), -1)[:, 0].float())
        if self.angles == "hexagonal":
            return (math.pi / 3) * torch.floor(6 * u).clamp(max=5)
        return 2 * math.pi * u

    def _sources(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each angle and output pixel ``P``: the pixel nearest to ``R(−θ)·P`` and whether it is within
        the camera (``(len(theta), n_pixels)`` each)."""
        n = len(theta)
        pixels = self.pixels.to(theta.device)
        c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        x, y = pixels[:, 0][None], pixels[:, 1][None]
        source = torch.stack([c * x + s * y, -s * x + c * y], dim=-1)  # R(−θ)·P for every output pixel P
        dist, idx = torch.cdist(source, pixels[None].expand(n, -1, -1)).min(dim=2)
        return idx, dist <= OUTSIDE_PITCHES * self.pitch

    def turn(self, images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Cartesian images ``(N, 1, side, side)`` turned about the camera centre by ``theta`` (radians; with
        ``angles: hexagonal`` rounded to the nearest multiple of 60 degrees, a permutation looked up once)."""
        n = len(images)
        if self.angles == "hexagonal":
            k = torch.round(theta / (math.pi / 3)).long() % 6
            idx, inside = self.hex_sources[k], self.hex_inside[k]
        else:
            idx, inside = self._sources(theta)
        values = self.decoder.units(images).gather(1, idx)
        values = torch.where(inside, values, torch.full_like(values, self.background))
        out = torch.full((n, self.side * self.side), self.background, dtype=values.dtype, device=values.device)
        out = out.index_copy(1, self.cells, values)
        return out.reshape(n, 1, self.side, self.side).to(images.dtype)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.turn(self.base(z, y), self.angle(z))


def iact_rotated(
    info: DataInfo,
    base: Annotated[str, ComponentRef("generator", params="base_params")] = "dcgan",
    base_params: Optional[dict[str, Any]] = None,
    seed: int = 0,
    angles: Literal["any", "hexagonal"] = "any",
) -> RotatedGenerator:
    """A base generator's images turned about the camera centre by an angle drawn from the noise.

    The image distribution of a source at the camera centre is symmetric under such turns; with it in
    the network the base generator learns one frame instead of every azimuth (``θ = 2π Φ(z₀)``, ``z₀`` the
    first latent coordinate; nearest-pixel turn on the hexagonal camera; docs/astro.md).

    Args:
        info: The dataset's info (injected): an IACT dataset (``iact-toy``, ``iact-file``).
        base: The registered generator that draws the images before the turn.
        base_params: Its parameters, e.g. ``{latent_dim: 64, width: 32, conditioning: cbn}``.
        seed: Injected by the engine and passed on to the base generator.
        angles: ``any``: every angle (nearest-pixel resampling, which jitters thin images' orientation
            by a few degrees); ``hexagonal``: multiples of 60°, the camera's own symmetry, an exact
            permutation of its pixels.
    """
    if base == "iact-rotated":
        raise ValueError("generator.base: 'iact-rotated' cannot turn itself; use e.g. base: dcgan")
    camera_from_info(info, "generator 'iact-rotated'")  # an IACT dataset, before the base generator is built
    net = build_component("generator", base, dict(base_params or {}), name_key="generator.base",
                          params_key="generator.base_params", info=info, seed=seed)
    if not hasattr(net, "latent_shape") or len(tuple(net.latent_shape)) == 0:
        raise ValueError(f"generator.base: '{base}' has no latent_shape; iact-rotated needs a noise vector")
    return RotatedGenerator(net, info, angles)
