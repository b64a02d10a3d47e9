"""The camera: its ctapipe geometry, the cartesian images the networks see, and the way back.

**Toy camera** (:func:`toy_camera`): hexagonal pixels on a hexagonal lattice, every lattice point within
``radius_pitches`` pixel pitches of the centre. The defaults follow the TAIGA-IACT camera (560 PMTs of
0.36° field of view each, about 9.6° in all, 4.75 m focal length): pitch 0.36° → 0.0298 m on the focal
plane, radius 12.3 pitches → **559 pixels**, 4.4° radius (8.9° across the pixel centres). Positions are
computed here and handed to :class:`ctapipe.instrument.CameraGeometry`; nothing is downloaded.

**Cartesian samples** (:class:`CartesianCamera`): ctapipe's
:meth:`~ctapipe.instrument.CameraGeometry.image_to_cartesian_representation` maps the hexagonal image
onto an axial (skewed) square grid, the trick the TAIGA GANs use; the toy camera gives 29 × 29 cells. The
grid is padded with zeros to the next power of two (32 × 32) because the image networks need square
power-of-two images. Cells that hold no pixel are 0. :meth:`CartesianCamera.to_pixels` is the exact
inverse on the pixel cells (ctapipe's ``image_from_cartesian_representation``).

**Amplitudes** (:class:`Amplitude`): photoelectrons span 0 to thousands, so the networks see
``a = asinh(pe / scale_pe) / asinh(max_pe / scale_pe)``: linear near 0 (pedestal noise), logarithmic for
bright pixels, ``max_pe → 1``. Values beyond ``±max_pe`` are clipped (counted in the dataset's protocol).
Cleaned images (no negative values) use ``offset=True``: ``x = 2a − 1``, so an empty pixel is ``−1``, where
a ``tanh`` generator saturates, as the black background of ordinary images (a generator that must hit
exactly 0 in the middle of its range leaves faint noise everywhere and its showers too dim to survive
cleaning; measured in the README). Uncleaned images keep the odd map (``0 pe → 0``), so negative
pedestal-subtracted values survive. The map is not affine, so
``DataInfo.denormalize`` stays ``None``; the metrics map back through :func:`camera_from_info`.

The whole camera description travels as plain data in ``info.protocol["camera"]`` and
``info.protocol["amplitude"]`` (so in checkpoints), and :func:`camera_from_info` rebuilds both from it.

ctapipe and scipy are imported inside the functions that use them: every ``ganforge`` command imports
this module to register the plugin, and importing ctapipe takes about two seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import astropy.units as u
import numpy as np

TAIGA_PIXEL_DEG = 0.36  # TAIGA-IACT: one PMT with its Winston cone sees 0.36°
TAIGA_FOCAL_LENGTH_M = 4.75
TOY_RADIUS_PITCHES = 12.3  # 559 pixels (the lattice's shells hold 547, 559, 571, ...)


def deg_to_m(deg: float, focal_length_m: float) -> float:
    """Angle on the sky → distance on the focal plane (``f · tan θ``)."""
    return focal_length_m * math.tan(math.radians(deg))


def m_to_deg(m: Any, focal_length_m: float) -> Any:
    """Distance on the focal plane → angle on the sky (degrees); works on arrays."""
    return np.degrees(np.arctan(np.asarray(m, dtype=float) / focal_length_m))


def hex_lattice(radius_pitches: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a hexagonal lattice of unit pitch within ``radius_pitches`` of the origin.

    Axial coordinates ``(q, r)`` → ``x = q + r/2``, ``y = r·√3/2``; neighbours along x, so the
    hexagons are pointy-top (ctapipe's ``pix_rotation = 0``). Sorted by ring, then angle.
    """
    n = int(math.ceil(radius_pitches)) + 1
    q, r = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    q, r = q.ravel(), r.ravel()
    x = q + r / 2.0
    y = r * math.sqrt(3.0) / 2.0
    d = np.hypot(x, y)
    keep = d <= radius_pitches + 1e-9
    x, y, d = x[keep], y[keep], d[keep]
    order = np.lexsort((np.round(np.arctan2(y, x), 9), np.round(d, 9)))
    return x[order], y[order]


def geometry_from_positions(name: str, pix_x_m: np.ndarray, pix_y_m: np.ndarray, pix_area_m2: np.ndarray,
                            pix_type: str = "hexagon", pix_rotation_deg: float = 0.0) -> CameraGeometry:
    """A :class:`CameraGeometry` in the camera frame (metres) from pixel positions."""
    from ctapipe.instrument import CameraGeometry
    n = len(pix_x_m)
    return CameraGeometry(
        name,
        pix_id=np.arange(n),
        pix_x=np.asarray(pix_x_m, dtype=float) * u.m,
        pix_y=np.asarray(pix_y_m, dtype=float) * u.m,
        pix_area=np.broadcast_to(np.asarray(pix_area_m2, dtype=float), (n,)).copy() * u.m**2,
        pix_type=pix_type,
        pix_rotation=pix_rotation_deg * u.deg,
    )


def toy_camera_spec(pixel_deg: float = TAIGA_PIXEL_DEG, radius_pitches: float = TOY_RADIUS_PITCHES,
                    focal_length_m: float = TAIGA_FOCAL_LENGTH_M) -> dict[str, Any]:
    """The toy camera as plain data (what ``info.protocol["camera"]`` holds)."""
    return {"model": "toy-hex", "pixel_deg": float(pixel_deg), "radius_pitches": float(radius_pitches),
            "focal_length_m": float(focal_length_m)}


def toy_camera(pixel_deg: float = TAIGA_PIXEL_DEG, radius_pitches: float = TOY_RADIUS_PITCHES,
               focal_length_m: float = TAIGA_FOCAL_LENGTH_M) -> CameraGeometry:
    """The TAIGA-IACT-like hexagonal toy camera (559 pixels with the defaults); see the module docstring."""
    from ctapipe.instrument import CameraGeometry
    pitch = deg_to_m(pixel_deg, focal_length_m)
    x, y = hex_lattice(radius_pitches)
    area = math.sqrt(3.0) / 2.0 * pitch**2  # a regular hexagon of flat-to-flat width `pitch`
    return geometry_from_positions("ganforge-toy-iact", x * pitch, y * pitch, np.full(len(x), area))


def positions_camera_spec(geom: CameraGeometry, focal_length_m: float) -> dict[str, Any]:
    """A camera read from a file, as plain data: pixel positions (m), areas, shape, rotation."""
    from ctapipe.instrument import CameraGeometry
    return {
        "model": "positions",
        "name": str(geom.name),
        "pix_x_m": [float(v) for v in geom.pix_x.to_value(u.m)],
        "pix_y_m": [float(v) for v in geom.pix_y.to_value(u.m)],
        "pix_area_m2": [float(v) for v in geom.pix_area.to_value(u.m**2)],
        "pix_type": geom.pix_type.value,
        "pix_rotation_deg": float(geom.pix_rotation.to_value(u.deg)),
        "focal_length_m": float(focal_length_m),
    }


def geometry_from_spec(spec: Mapping[str, Any]) -> CameraGeometry:
    """Rebuild the geometry from :func:`toy_camera_spec` or :func:`positions_camera_spec` data."""
    from ctapipe.instrument import CameraGeometry
    model = spec.get("model")
    if model == "toy-hex":
        return toy_camera(spec["pixel_deg"], spec["radius_pitches"], spec["focal_length_m"])
    if model == "positions":
        return geometry_from_positions(spec["name"], np.asarray(spec["pix_x_m"]), np.asarray(spec["pix_y_m"]),
                                       np.asarray(spec["pix_area_m2"]), spec["pix_type"], spec["pix_rotation_deg"])
    raise ValueError(f"camera description has model={model!r}; expected 'toy-hex' or 'positions' "
                     "(info.protocol['camera'] is written by the iact-toy and iact-file datasets)")


@dataclass(frozen=True)
class Amplitude:
    """``a = asinh(pe / scale_pe) / asinh(max_pe / scale_pe)`` (``2a − 1`` with ``offset``) and back.

    See the module docstring. With ``offset`` the photoelectrons must not be negative (cleaned images).
    """

    scale_pe: float = 2.0
    max_pe: float = 20_000.0
    offset: bool = False

    def __post_init__(self) -> None:
        if not (self.scale_pe > 0 and self.max_pe > self.scale_pe):
            raise ValueError(f"amplitude: need 0 < scale_pe < max_pe, got scale_pe={self.scale_pe}, "
                             f"max_pe={self.max_pe}")

    @property
    def _norm(self) -> float:
        return math.asinh(self.max_pe / self.scale_pe)

    def forward(self, pe: np.ndarray) -> np.ndarray:
        pe = np.clip(np.asarray(pe, dtype=np.float64), -self.max_pe, self.max_pe)
        if self.offset and pe.size and pe.min() < 0:
            raise ValueError(f"amplitude offset=True needs non-negative photoelectrons (cleaned images), got a "
                             f"minimum of {pe.min():.3g} pe; use offset=False for uncleaned images")
        a = np.arcsinh(pe / self.scale_pe) / self._norm
        return 2.0 * a - 1.0 if self.offset else a

    def inverse(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        if self.offset:
            a = (a + 1.0) / 2.0
        return self.scale_pe * np.sinh(a * self._norm)

    @property
    def background(self) -> float:
        """The network value of 0 pe (cells outside the camera and padding hold it)."""
        return -1.0 if self.offset else 0.0

    def spec(self) -> dict[str, Any]:
        return {"transform": "asinh(pe/scale_pe)/asinh(max_pe/scale_pe)" + (", then 2a-1" if self.offset else ""),
                "scale_pe": self.scale_pe, "max_pe": self.max_pe, "offset": self.offset}


class CartesianCamera:
    """A hexagonal camera and its padded square cartesian grid (see the module docstring).

    Args:
        geometry: The ctapipe camera geometry.
        focal_length_m: For converting Hillas lengths to degrees.
        amplitude: Photoelectrons ↔ network values.
        spec: The plain-data description this camera was built from (goes into ``info.protocol``).
    """

    def __init__(self, geometry: CameraGeometry, focal_length_m: float, amplitude: Amplitude,
                 spec: Mapping[str, Any]) -> None:
        from ctapipe.instrument import CameraGeometry
        self.geometry = geometry
        self.focal_length_m = float(focal_length_m)
        self.amplitude = amplitude
        self.spec = dict(spec)
        grid = geometry.image_to_cartesian_representation(np.arange(geometry.n_pixels, dtype=float))
        self.grid_shape = grid.shape
        side = max(grid.shape)
        self.side = max(8, 1 << (side - 1).bit_length())  # next power of two, at least 8
        if self.side > 128:
            raise ValueError(f"camera '{geometry.name}': its cartesian grid is {grid.shape}, more than the "
                             "image networks' largest size 128 × 128")
        self.offset = ((self.side - grid.shape[0]) // 2, (self.side - grid.shape[1]) // 2)

    @property
    def n_pixels(self) -> int:
        return int(self.geometry.n_pixels)

    def to_grid(self, images: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Pixel images ``(N, n_pixels)`` (any units) → ``(N, side, side)``; empty cells ``fill``."""
        images = np.atleast_2d(np.asarray(images, dtype=np.float64))
        if images.shape[1] != self.n_pixels:
            raise ValueError(f"camera '{self.geometry.name}' has {self.n_pixels} pixels, got images with "
                             f"{images.shape[1]} values each")
        grid = self.geometry.image_to_cartesian_representation(images).reshape(len(images), *self.grid_shape)
        out = np.full((len(images), self.side, self.side), float(fill))
        r0, c0 = self.offset
        out[:, r0:r0 + self.grid_shape[0], c0:c0 + self.grid_shape[1]] = np.nan_to_num(grid, nan=float(fill))
        return out

    def to_pixels(self, grids: np.ndarray) -> np.ndarray:
        """``(N, side, side)`` or ``(N, 1, side, side)`` → pixel images ``(N, n_pixels)``."""
        grids = np.asarray(grids)
        if grids.ndim == 4:
            grids = grids[:, 0]
        if grids.shape[-2:] != (self.side, self.side):
            raise ValueError(f"camera '{self.geometry.name}': expected cartesian images of {self.side} × "
                             f"{self.side}, got shape {grids.shape}")
        r0, c0 = self.offset
        crop = grids[:, r0:r0 + self.grid_shape[0], c0:c0 + self.grid_shape[1]]
        return self.geometry.image_from_cartesian_representation(crop).reshape(len(grids), self.n_pixels)

    def encode(self, pe: np.ndarray) -> np.ndarray:
        """Pixel images in photoelectrons → network samples ``(N, 1, side, side)`` float32."""
        return self.to_grid(self.amplitude.forward(pe), fill=self.amplitude.background)[:, None].astype(np.float32)

    def decode(self, samples: Any) -> np.ndarray:
        """Network samples ``(N, 1, side, side)`` (tensor or array) → pixel images in photoelectrons."""
        if hasattr(samples, "detach"):
            samples = samples.detach().cpu().double().numpy()
        return self.amplitude.inverse(self.to_pixels(samples))

    def protocol(self) -> dict[str, Any]:
        return {"camera": self.spec, "amplitude": self.amplitude.spec(),
                "cartesian": {"grid": list(self.grid_shape), "padded_to": self.side, "offset": list(self.offset),
                              "mapping": "ctapipe CameraGeometry.image_to_cartesian_representation"}}


def camera_from_spec(camera: Mapping[str, Any], amplitude: Mapping[str, Any]) -> CartesianCamera:
    geom = geometry_from_spec(camera)
    amp = Amplitude(float(amplitude["scale_pe"]), float(amplitude["max_pe"]), bool(amplitude.get("offset", False)))
    focal = float(camera["focal_length_m"])
    return CartesianCamera(geom, focal, amp, camera)


def camera_from_info(info: Any, owner: str) -> CartesianCamera:
    """The camera of an IACT dataset's :class:`ganforge.DataInfo` (from ``info.protocol``).

    Raises:
        ValueError: naming ``owner`` when the dataset is not an IACT dataset.
    """
    proto: Optional[Mapping[str, Any]] = getattr(info, "protocol", None)
    if info is None or not proto or "camera" not in proto or "amplitude" not in proto:
        name = getattr(info, "name", "") or "?"
        raise ValueError(f"{owner}: dataset '{name}' has no camera description (info.protocol['camera']); "
                         "use it with dataset.name=iact-toy or iact-file")
    return camera_from_spec(proto["camera"], proto["amplitude"])
