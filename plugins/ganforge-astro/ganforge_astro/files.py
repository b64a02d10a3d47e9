"""``iact-file``: the user's IACT images, from ``.npz`` files or ctapipe DL1 HDF5 files.

**.npz** (read with ``numpy.load(allow_pickle=False)``: a data file cannot run code). Arrays:

=================  =========================================================================================
key                content
=================  =========================================================================================
``images``         ``(N, n_pixels)`` pixel images, or ``(N, H, W)`` cartesian images in the camera's
                   ctapipe cartesian layout (its ``image_to_cartesian_representation`` grid, or that grid
                   padded to the next power of two as ``iact-toy`` serves it); photoelectrons
``energy``         ``(N,)`` primary energy in TeV (``energy_key``)
``particle``       ``(N,)`` 0/1 or ``"gamma"``/``"proton"`` (``particle_key``; optional: all gammas without it)
``impact``         ``(N,)`` impact distance in m (``impact_key``; optional)
``pix_x, pix_y``   ``(n_pixels,)`` pixel positions on the focal plane (m); optional with
``pix_area``       ``(n_pixels,)`` areas (m²), ``focal_length`` (m, scalar): without them the images must
``focal_length``   be on the 559-pixel toy camera
=================  =========================================================================================

**DL1 HDF5** (``.h5``/``.hdf5``, as written by ctapipe's ``DataWriter``): read with ctapipe's
``TableLoader`` (``dl1_images`` + ``simulated``): the images of telescope ``tel_id`` joined with the
simulated shower's ``true_energy`` and ``true_shower_primary_id`` (0 gamma, 101 proton); the geometry
and focal length from the file's subarray description.

Every problem is one ``ValueError`` naming the file, the key and the fix: mismatched lengths, a missing
column, a geometry that does not match the images, non-finite pixels, an unknown particle type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ganforge_astro.camera import (
    Amplitude,
    CartesianCamera,
    geometry_from_positions,
    positions_camera_spec,
    toy_camera,
    toy_camera_spec,
)
from ganforge_astro.dataset import PARTICLES, IACTDataset, condition_columns

CORSIKA_IDS = {0: 0, 101: 1, 1: 1}  # ctapipe/CORSIKA primary ids: 0 gamma, 101 proton (1 kept for 0/1 files)


def _fail(path: Path, message: str) -> None:
    raise ValueError(f"dataset iact-file: {path}: {message}")


def particle_codes(values: np.ndarray, path: Path, key: str, ids: Optional[dict[int, int]] = None) -> np.ndarray:
    """0 (gamma) / 1 (proton) from numbers or names; an unknown type is one error listing what was found."""
    v = np.asarray(values)
    if v.dtype.kind in "US":
        names = np.char.lower(v.astype(str))
        bad = sorted(set(names.tolist()) - set(PARTICLES))
        if bad:
            _fail(path, f"'{key}' has unknown particle type(s) {bad[:5]}; expected {list(PARTICLES)} (or 0/1)")
        return (names == "proton").astype(np.int64)
    if v.dtype.kind not in "iuf" or (v.dtype.kind == "f" and not np.all(np.isfinite(v))):
        _fail(path, f"'{key}' must hold 0/1 or 'gamma'/'proton', got dtype {v.dtype}")
    table = ids or {0: 0, 1: 1}
    found = np.unique(v).tolist()
    bad = [x for x in found if x not in table]
    if bad:
        allowed = ", ".join(f"{k} ({PARTICLES[c]})" for k, c in table.items())
        _fail(path, f"'{key}' has unknown particle type(s) {bad[:5]}; expected {allowed}")
    return np.vectorize(table.__getitem__, otypes=[np.int64])(v) if len(v) else v.astype(np.int64)


def _to_pixels(images: np.ndarray, camera: CartesianCamera, path: Path, key: str) -> np.ndarray:
    """Pixel images from pixel or cartesian layout, checked against the camera."""
    n = camera.n_pixels
    if images.ndim == 2:
        if images.shape[1] != n:
            _fail(path, f"'{key}' has {images.shape[1]} pixels per image but the camera has {n}; give the "
                        "camera's pixel positions (pix_x, pix_y) or images of the camera they were taken with")
        return images
    if images.ndim == 3:
        if images.shape[1:] == camera.grid_shape:
            return camera.geometry.image_from_cartesian_representation(images).reshape(len(images), n)
        if images.shape[1:] == (camera.side, camera.side):
            return camera.to_pixels(images)
        _fail(path, f"'{key}' holds cartesian images of {images.shape[1]} × {images.shape[2]}, but the camera's "
                    f"cartesian grid is {camera.grid_shape[0]} × {camera.grid_shape[1]} (padded: {camera.side} × "
                    f"{camera.side}); the images do not belong to this camera geometry")
    _fail(path, f"'{key}' has shape {images.shape}; expected (N, n_pixels) or (N, H, W)")
    raise AssertionError  # unreachable


def _check_finite(pe: np.ndarray, path: Path, key: str) -> None:
    bad = ~np.isfinite(pe)
    if bad.any():
        ev = np.argwhere(bad)[0]
        _fail(path, f"'{key}' has {int(bad.sum())} non-finite pixel value(s) (NaN/inf) in "
                    f"{int(bad.any(axis=1).sum())} image(s), the first at image {ev[0]}, pixel {ev[1]}; "
                    "replace them (e.g. 0 for broken pixels) or drop those images")


def _read_npz(path: Path, energy_key: str, particle_key: Optional[str], impact_key: Optional[str],
              amplitude: Amplitude) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], CartesianCamera]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        _fail(path, f"cannot be read without unpickling ({exc}); save plain numeric or string arrays")
    keys = sorted(arrays)
    for key, param in (("images", None), (energy_key, "energy_key"), (particle_key, "particle_key"),
                       (impact_key, "impact_key")):
        if key and key not in arrays:
            fix = f"add it or set the dataset's {param}" if param else "add the images under this name"
            _fail(path, f"has no column '{key}' (it has {keys}); {fix}")
    if ("pix_x" in arrays) != ("pix_y" in arrays):
        _fail(path, "has only one of 'pix_x', 'pix_y'; give both pixel coordinate arrays (m)")
    if "pix_x" in arrays:
        px, py = arrays["pix_x"].astype(float), arrays["pix_y"].astype(float)
        if px.shape != py.shape or px.ndim != 1:
            _fail(path, f"'pix_x' {px.shape} and 'pix_y' {py.shape} must be 1-D of the same length")
        area = arrays.get("pix_area")
        if area is None:
            from ctapipe.instrument import CameraGeometry

            width = CameraGeometry.guess_pixel_width(px, py)
            area = np.full(len(px), np.sqrt(3.0) / 2.0 * float(np.asarray(width)) ** 2)
        if "focal_length" not in arrays:
            _fail(path, "has pixel positions but no 'focal_length' (m); add it (needed for angles in degrees)")
        geom = geometry_from_positions(path.stem, px, py, np.asarray(area, dtype=float))
        focal = float(arrays["focal_length"])
        camera = CartesianCamera(geom, focal, amplitude, positions_camera_spec(geom, focal))
    else:
        spec = toy_camera_spec()
        camera = CartesianCamera(toy_camera(), spec["focal_length_m"], amplitude, spec)
    images = np.asarray(arrays["images"], dtype=np.float64)
    n = len(images)
    columns = {"images": n, energy_key: len(arrays[energy_key])}
    for k in (particle_key, impact_key):
        if k:
            columns[k] = len(arrays[k])
    if len(set(columns.values())) > 1:
        _fail(path, "columns have different lengths: " + ", ".join(f"'{k}' {v}" for k, v in columns.items())
              + "; every column needs one row per image")
    pe = _to_pixels(images, camera, path, "images")
    _check_finite(pe, path, "images")
    energy = np.asarray(arrays[energy_key], dtype=np.float64)
    if not np.all(np.isfinite(energy) & (energy > 0)):
        _fail(path, f"'{energy_key}' must be positive finite energies in TeV; found {energy[~(energy > 0)][:3]}")
    particle = particle_codes(arrays[particle_key], path, particle_key) if particle_key else np.zeros(n, np.int64)
    impact = None if not impact_key else np.asarray(arrays[impact_key], dtype=np.float64)
    return pe, energy, particle, impact, camera


def _read_dl1(path: Path, tel_id: int, amplitude: Amplitude) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray, CartesianCamera]:
    import astropy.units as u
    from ctapipe.io import TableLoader

    with TableLoader(path, dl1_images=True, simulated=True, instrument=False) as loader:
        subarray = loader.subarray
        if tel_id not in subarray.tel:
            _fail(path, f"has no telescope tel_id={tel_id}; its telescopes are {sorted(int(t) for t in subarray.tel)}; set tel_id")
        table = loader.read_telescope_events([tel_id])
    for col in ("image", "true_energy", "true_shower_primary_id"):
        if col not in table.colnames:
            what = "images (write DL1 images)" if col == "image" else "the simulated shower (a simulation file)"
            _fail(path, f"telescope {tel_id} has no column '{col}' after joining {what}; columns: {table.colnames}")
    tel = subarray.tel[tel_id]
    geom = tel.camera.geometry
    focal = float(tel.optics.equivalent_focal_length.to_value(u.m))
    camera = CartesianCamera(geom, focal, amplitude, positions_camera_spec(geom, focal))
    pe = np.asarray(table["image"], dtype=np.float64)
    if pe.ndim != 2 or pe.shape[1] != geom.n_pixels:
        _fail(path, f"images have shape {pe.shape} but telescope {tel_id}'s camera has {geom.n_pixels} pixels")
    _check_finite(pe, path, "image")
    energy = u.Quantity(table["true_energy"], u.TeV).to_value(u.TeV).astype(np.float64)
    particle = particle_codes(np.asarray(table["true_shower_primary_id"]), path, "true_shower_primary_id",
                              {0: 0, 101: 1})
    impact = u.Quantity(table["true_impact_distance"], u.m).to_value(u.m) if "true_impact_distance" in table.colnames else None
    return pe, energy, particle, impact, camera


def iact_file(
    path: str,
    energy_key: str = "energy",
    particle_key: Optional[str] = "particle",
    impact_key: Optional[str] = None,
    tel_id: int = 1,
    scale_pe: float = 2.0,
    max_pe: float = 20_000.0,
    offset: Optional[bool] = None,
) -> IACTDataset:
    """IACT images with their energies and particle types from a ``.npz`` or ctapipe DL1 HDF5 file.

    Args:
        path: The file (``.npz``, ``.h5``, ``.hdf5``).
        energy_key: npz: the column of primary energies in TeV.
        particle_key: npz: the column of particle types (0/1 or gamma/proton); ``null``: all gammas.
        impact_key: npz: the column of impact distances in m, a second continuous condition (column 2
            of y, in 100 m); ``null``: none.
        tel_id: DL1: the telescope whose images are read.
        scale_pe: Amplitude map: photoelectrons where it turns from linear to logarithmic.
        max_pe: Amplitude map: photoelectrons that map to 1 (larger values are clipped).
        offset: Amplitude map: empty pixels at -1 (needs non-negative, i.e. cleaned, images); ``null``:
            when no pixel value is negative.
    """
    from ganforge import sha256_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"dataset iact-file: path={path!r} is not a file; give the path of a .npz or DL1 .h5 file")
    amplitude = Amplitude(scale_pe, max_pe)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        pe, energy, particle, impact, camera = _read_npz(p, energy_key, particle_key, impact_key, amplitude)
        source = {"format": "npz", "energy_key": energy_key, "particle_key": particle_key, "impact_key": impact_key}
    elif suffix in (".h5", ".hdf5"):
        pe, energy, particle, impact, camera = _read_dl1(p, tel_id, amplitude)
        source = {"format": "ctapipe DL1 HDF5 (TableLoader)", "tel_id": tel_id}
        if impact_key is None:
            impact = None
    else:
        raise ValueError(f"dataset iact-file: {p}: unsupported extension {p.suffix!r}; expected .npz, .h5 or .hdf5")
    if len(pe) == 0:
        _fail(p, "holds no images")
    negative = bool(np.any(pe < 0))
    if offset and negative:
        _fail(p, f"offset=true needs non-negative (cleaned) images, but the minimum pixel is {pe.min():.3g} pe; "
                 "set offset: false (or null to decide from the data)")
    camera.amplitude = Amplitude(scale_pe, max_pe, offset=(not negative) if offset is None else bool(offset))
    y = condition_columns(np.log10(energy), particle, impact)
    return IACTDataset(pe, y, camera, "iact-file",
                       {**source, "path": str(p), "sha256": sha256_file(p)})
