"""``iact-rotated``: a generator that draws each image in its own frame and turns it about the camera centre;
``iact-canonical``: a discriminator that judges every image turned into one sector of the camera.

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
that were read. Cells outside the camera hold the background. With ``mirror`` half of the images (``z₁ > 0``)
are also reflected ``y → −y`` before the turn.

``iact-canonical`` gives the discriminator the same symmetry, exactly: it turns each image by the
multiple of 60° (and reflects it) that brings its light's centroid into one 30° sector, so it judges
every orientation in one frame (:class:`CanonicalDiscriminator`).
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


def pixel_pitch(positions: torch.Tensor) -> float:
    """The median distance from each pixel to its nearest neighbour, in the positions' units."""
    d = torch.cdist(positions, positions)
    d.fill_diagonal_(math.inf)
    return float(d.min(1).values.median())


class _CameraPixels(nn.Module):
    """What the turned generator and the canonical discriminator share: the camera's pixels (positions and
    cartesian cells) and the way back from pixel values to cartesian images."""

    def __init__(self, info: DataInfo, owner: str) -> None:
        super().__init__()
        camera = camera_from_info(info, owner)
        self.decoder = PixelDecoder(camera)
        self.register_buffer("pixels", self.decoder.positions.clone(), persistent=False)  # (n_pixels, 2)
        self.register_buffer("cells", self.decoder.cells.clone(), persistent=False)
        self.background = float(camera.amplitude.background)
        self.side = camera.side

    def to_images(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Pixel values ``(N, n_pixels)`` → cartesian images ``(N, 1, side, side)`` in ``like``'s dtype, the
        cells outside the camera holding the background."""
        n = len(values)
        out = torch.full((n, self.side * self.side), self.background, dtype=values.dtype, device=values.device)
        out = out.index_copy(1, self.cells, values)
        return out.reshape(n, 1, self.side, self.side).to(like.dtype)


class RotatedGenerator(_CameraPixels):
    """A base generator's images turned about the camera centre by ``θ = 2π Φ(z₀)`` (module docstring)."""

    def __init__(self, base: nn.Module, info: DataInfo, angles: str = "any", mirror: bool = False) -> None:
        owner = "generator 'iact-rotated'"
        if angles not in ANGLES:
            raise ValueError(f"{owner}: angles={angles!r}; expected one of {list(ANGLES)}")
        if not isinstance(mirror, bool):
            raise ValueError(f"{owner}: mirror={mirror!r}; expected true or false")
        super().__init__(info, owner)
        self.angles = angles
        self.mirror = mirror
        self.base = base
        self.latent_shape = tuple(base.latent_shape)
        if mirror and math.prod(self.latent_shape) < 2:
            raise ValueError(f"{owner}: mirror needs a noise of at least 2 values (the angle from the first, the "
                             f"reflection from the second); the base generator's latent_shape is {self.latent_shape}")
        self.pitch = pixel_pitch(self.pixels)
        # the six turns by multiples of 60 degrees, looked up once (angles: hexagonal): which pixel each reads
        sixths = torch.arange(6, dtype=torch.float32) * (math.pi / 3)
        with torch.no_grad():
            idx, inside = self._sources(sixths)
        self.register_buffer("hex_sources", idx, persistent=False)  # (6, n_pixels)
        self.register_buffer("hex_inside", inside, persistent=False)
        if mirror:
            _, flip = camera_symmetries(self.decoder, owner)  # raises for a camera that is not symmetric
            self.register_buffer("flip", flip, persistent=False)

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

    def reflected(self, z: torch.Tensor) -> torch.Tensor:
        """With ``mirror``: whether each sample is reflected (``y → −y``) before the turn, ``z₁ > 0`` (the
        second latent coordinate), so with probability 1/2 and as a function of the noise."""
        return z.reshape(len(z), -1)[:, 1] > 0

    def turn(self, images: torch.Tensor, theta: torch.Tensor, reflect: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cartesian images ``(N, 1, side, side)`` turned about the camera centre by ``theta`` (radians; with
        ``angles: hexagonal`` rounded to the nearest multiple of 60 degrees, a permutation looked up once),
        those where ``reflect`` is true reflected (``y → −y``, exact on a hexagonal camera) before the turn."""
        n = len(images)
        if self.angles == "hexagonal":
            k = torch.round(theta / (math.pi / 3)).long() % 6
            idx, inside = self.hex_sources[k], self.hex_inside[k]
        else:
            idx, inside = self._sources(theta)
        if reflect is not None:
            # output pixel P reads the reflected image at source(P), i.e. the base image at flip[source(P)]
            idx = torch.where(reflect[:, None], self.flip[idx], idx)
        values = self.decoder.units(images).gather(1, idx)
        values = torch.where(inside, values, torch.full_like(values, self.background))
        return self.to_images(values, images)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.turn(self.base(z, y), self.angle(z), self.reflected(z) if self.mirror else None)


def iact_rotated(
    info: DataInfo,
    base: Annotated[str, ComponentRef("generator", params="base_params")] = "dcgan",
    base_params: Optional[dict[str, Any]] = None,
    seed: int = 0,
    angles: Literal["any", "hexagonal"] = "any",
    mirror: bool = False,
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
        mirror: Also reflect half the images (``y → −y``, chosen by the second latent coordinate) before
            the turn: with ``angles: hexagonal`` the twelve symmetries of the hexagon, so the images'
            distribution is symmetric whatever the base generator draws (pair it with the
            ``iact-canonical`` discriminator, which cannot tell a reflected image from the original).
    """
    if base == "iact-rotated":
        raise ValueError("generator.base: 'iact-rotated' cannot turn itself; use e.g. base: dcgan")
    camera_from_info(info, "generator 'iact-rotated'")  # an IACT dataset, before the base generator is built
    net = build_component("generator", base, dict(base_params or {}), name_key="generator.base",
                          params_key="generator.base_params", info=info, seed=seed)
    if not hasattr(net, "latent_shape") or len(tuple(net.latent_shape)) == 0:
        raise ValueError(f"generator.base: '{base}' has no latent_shape; iact-rotated needs a noise vector")
    return RotatedGenerator(net, info, angles, mirror)


# -- the discriminator's side: images turned into one sector before it judges them --------------------

CANONICAL_TOLERANCE_PITCHES = 1e-3  # a symmetry of the camera maps every pixel onto a pixel within this


def camera_symmetries(decoder: PixelDecoder, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The hexagonal camera's own symmetries as pixel look-ups: ``turns`` ``(6, n_pixels)``, the pixel that
    output pixel ``P`` reads to turn an image by ``k``·60° (``R(−k·60°)·P``), and ``mirror`` ``(n_pixels,)``
    for the reflection ``y → −y``. Raises if the camera is not symmetric under them (a pixel would move
    onto no pixel)."""
    pos = decoder.positions.double()
    pitch = pixel_pitch(pos)
    x, y = pos[:, 0], pos[:, 1]
    maps = []
    for k in range(6):
        t = k * math.pi / 3
        maps.append(torch.stack([math.cos(t) * x + math.sin(t) * y, -math.sin(t) * x + math.cos(t) * y], dim=1))
    maps.append(torch.stack([x, -y], dim=1))
    out = []
    for i, m in enumerate(maps):
        dist, idx = torch.cdist(m, pos).min(dim=1)
        worst = float(dist.max()) / pitch
        if worst > CANONICAL_TOLERANCE_PITCHES:
            what = f"a turn by {60 * i} degrees" if i < 6 else "the reflection y -> -y"
            raise ValueError(f"{owner}: camera '{decoder.camera.geometry.name}' is not symmetric under {what} about "
                             f"its centre (a pixel lands {worst:.3g} pitches from the nearest pixel); it needs a "
                             "hexagonal camera centred on the optical axis, e.g. iact-toy's")
        out.append(idx)
    return torch.stack(out[:6]), out[6]


class CanonicalDiscriminator(_CameraPixels):
    """A base discriminator that judges every image turned (and with ``mirror`` reflected) into one sector.

    Before the base discriminator sees an image, the image is turned by the multiple of 60° that brings
    the centroid of its light into the sector ``[−30°, 30°)`` (with ``mirror``, then reflected so the
    centroid lies in ``[0°, 30°]``). The turns and the reflection are exact permutations of the hexagonal
    camera's pixels, and real and generated images go through the same map, so for a distribution that
    has the camera's symmetry (a source at the centre) nothing is lost, while the discriminator judges
    shapes and orientations in one sector of the camera instead of six (or twelve). The sector is
    chosen from the image itself: no randomness, so resume and distributed training stay exact. The
    gradient flows through the permutation to every pixel.
    """

    def __init__(self, base: nn.Module, info: DataInfo, mirror: bool = False) -> None:
        owner = "discriminator 'iact-canonical'"
        if not isinstance(mirror, bool):
            raise ValueError(f"{owner}: mirror={mirror!r}; expected true or false")
        super().__init__(info, owner)
        self.base = base
        self.mirror = mirror
        if hasattr(base, "batch_multiple"):
            self.batch_multiple = int(base.batch_multiple)
        turns, flip = camera_symmetries(self.decoder, owner)
        self.register_buffer("turns", turns, persistent=False)
        self.register_buffer("flip", flip, persistent=False)

    def canonical(self, images: torch.Tensor) -> torch.Tensor:
        """Cartesian images ``(N, 1, side, side)`` turned (and reflected) into the canonical sector."""
        values = self.decoder.units(images)  # (N, n_pixels), network units
        with torch.no_grad():
            light = (values - self.background).clamp(min=0)
            cx, cy = light @ self.pixels[:, 0], light @ self.pixels[:, 1]
            phi = torch.atan2(cy, cx)  # in (-pi, pi]; an empty image has phi = 0, the first sector
            k = torch.round(phi / (math.pi / 3)).long() % 6  # the sector; turning by -k * 60 degrees brings it to 0
            idx = self.turns[(6 - k) % 6]  # (N, n_pixels)
            if self.mirror:
                # after the turn the centroid's angle is phi - k * 60 degrees; reflect where it is negative
                below = (phi - k.to(phi.dtype) * (math.pi / 3)).remainder(2 * math.pi) > math.pi
                idx = torch.where(below[:, None], idx.gather(1, self.flip[None].expand_as(idx)), idx)
        return self.to_images(values.gather(1, idx), images)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Any:
        return self.base(self.canonical(x), y)


def iact_canonical(
    info: DataInfo,
    base: Annotated[str, ComponentRef("discriminator", params="base_params")] = "dcgan",
    base_params: Optional[dict[str, Any]] = None,
    seed: int = 0,
    mirror: bool = False,
) -> CanonicalDiscriminator:
    """A base discriminator that judges IACT images turned (and reflected) into one sector of the camera.

    Every image, real or generated, is turned by the multiple of 60° (an exact permutation of the
    hexagonal camera's pixels) that brings its light's centroid into ``[−30°, 30°)``, and with
    ``mirror`` reflected into ``[0°, 30°]``, before the base discriminator sees it. For a source at the
    camera centre this loses nothing and lets the discriminator learn shapes and orientations in one
    sector (docs/astro.md).

    Args:
        info: The dataset's info (injected): an IACT dataset whose camera is hexagonal and centred.
        base: The registered discriminator that judges the turned images.
        base_params: Its parameters, e.g. ``{width: 32, conditioning: projection, spectral_norm: true}``.
        seed: Injected by the engine and passed on to the base discriminator.
        mirror: Also reflect (``y → −y``) into a 30° sector: the twelve symmetries of the hexagon.
            Off by default, like ``iact-rotated``'s: the generator must be symmetric under every map
            this discriminator cannot see, so turn both on together (the ``iact-cgan`` configs do).
    """
    if base == "iact-canonical":
        raise ValueError("discriminator.base: 'iact-canonical' cannot wrap itself; use e.g. base: dcgan")
    camera_from_info(info, "discriminator 'iact-canonical'")
    net = build_component("discriminator", base, dict(base_params or {}), name_key="discriminator.base",
                          params_key="discriminator.base_params", info=info, seed=seed)
    return CanonicalDiscriminator(net, info, mirror)
