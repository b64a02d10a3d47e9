"""Physics constraints on generated IACT images, for ganforge's ``constrained`` objective.

Each constraint gets the dataset's :class:`ganforge.DataInfo` (injected) and returns an object with
``penalty(fake, y) -> (N,)``: ≥ 0, exactly 0 where the image satisfies the constraint, differentiable
with respect to ``fake``. ``fake`` is in training units (the cartesian network samples); every
constraint first decodes it to pixel amplitudes in photoelectrons with the dataset's own mapping
(:class:`PixelDecoder`: the crop and pixel cells of ctapipe's cartesian representation, then the
inverse amplitude map, in torch so gradients flow). Conditions are found by name in
``info.protocol["conditions"]`` (``log10_energy``, ``particle``), never by position.

``size-energy`` (calibrated)
    The **size** of an image is its total light after a soft tail cut: ``S = Σ_i pe_i · σ((pe_i − b) / τ)``
    over the camera pixels, with ``b = soft_clean_pe`` (3 pe: the boundary threshold) and ``τ = 0.5 pe``.
    On the cleaned training images (pixels outside the tail-cuts mask are 0) it is the cleaned size
    less the faint edge of boundary pixels; on a generated image it ignores the faint glow a generator
    leaves everywhere, which the cleaning the metrics apply would remove too. ``calibrate(x, y)`` fits,
    per particle type ``g`` on the training images, ``log10(S + 1) = a_g + b_g · log10 E`` by least
    squares and keeps the residual scatter ``σ_g``. Penalty, with the residual
    ``r = (log10(S_gen + 1) − a_g − b_g · log10 E) / σ_g``: ``relu(|r| − tolerance)²`` (``sides: both``),
    ``relu(r − tolerance)²`` (``above``: only images too bright for their energy) or
    ``relu(−r − tolerance)²`` (``below``: only too faint ones). ``soft_clean_width_pe: 0`` makes the soft
    step a hard cut (``S = Σ pe_i · [pe_i ≥ b]``; the pixels below ``b`` get no gradient).

    Why the configs penalize only ``above``: with ``both``, a generator's cheapest answer to "this image is
    too faint" is to light faint pixels all over the camera (measured: 43 pixels of 3–6 pe and 36 of
    6–20 pe per generated gamma, against 1.3 and 2.3 in real ones; 31 and 33 with the hard cut), which
    cleaning then joins to the shower, so images grow into wide blobs. Penalizing only the excess keeps
    the background dark (2.8 and 3.6 pixels) and leaves "enough light to survive cleaning" to
    ``survives-cleaning``. Why they use ``gradient: uniform``: the exact gradient of ``log10 S`` in
    network units grows with a pixel's brightness, so dimming along it flattens the bright core into
    the edge and widens the image; the uniform one (:meth:`SizeEnergyConstraint.log_size`) scales the
    light and keeps the shape (docs/astro.md has the runs).

``non-negative`` (calibrated unless ``min_pe`` is given)
    No camera pixel below the lowest amplitude ``m`` a real image has (``calibrate``: the minimum over
    the training images' camera pixels; 0 pe for cleaned images, about ``−NSB`` for uncleaned ones).
    Penalty: the mean over the camera pixels (not the empty cartesian cells) of
    ``relu(A(m) − x_i)²``, measured in network units ``x`` (``A`` is the amplitude map), which are
    bounded, where photoelectrons grow exponentially. With a ``tanh`` generator on cleaned images
    (empty pixels at −1, see :mod:`ganforge_astro.camera`) it can never be violated; it bites on
    uncleaned images (``cleaning: false``) and generators without ``tanh``.

``survives-cleaning``
    A differentiable surrogate of "ctapipe's ``tailcuts_clean`` keeps at least ``min_pixels`` pixels".
    A pixel is a *core* picture pixel when it and at least ``m`` (``min_picture_neighbors``) of its
    neighbours reach the picture threshold ``P``: its score is ``c_i = min(pe_i, m-th largest
    neighbour pe)`` (``pe_i`` when ``m = 0``). Penalty: ``relu(1 − c_(k) / P)²`` with ``c_(k)`` the
    ``k``-th largest score, ``k = max(1, min_pixels − m)``. With ``m ≥ 1`` and
    ``min_pixels ≤ m + 1`` (the defaults: 2 and 3) it is exact: ``tailcuts_clean`` keeps a pixel only
    when the image has a core pixel, and a core pixel keeps itself and its ``m`` bright neighbours, so
    "violated" is precisely "fails cleaning" (tested against ctapipe). Other settings are an
    approximation. Thresholds default to the dataset's own cleaning (``info.protocol["cleaning"]``),
    else the metrics' 6/3 pe, 2 neighbours, 3 pixels.

``points-to-source`` (calibrated)
    A gamma from a point source at the camera centre images as an ellipse whose major axis points at
    the centre: Hillas' ``alpha``, the angle between the major axis and the line from the centre to
    the centroid, is small (toy gammas: median 1.5°, 90 % under 8.9°; protons: median 47°). From the
    light-weighted second moments of the image after ``size-energy``'s soft tail cut, with the axis
    angle ψ and the centroid angle φ doubled so that nothing divides by zero or wraps:
    ``sin²(ψ − φ) = (1 − cos 2ψ cos 2φ − sin 2ψ sin 2φ) / 2``; it agrees with ctapipe's alpha on
    cleaned toy gammas to a median of 0.03–0.1° (tested). ``calibrate`` keeps ``sin α_max``, the
    ``quantile`` (0.9) of the training images' ``|sin α|`` for the particle type; penalty
    ``relu(|sin α| / sin α_max − 1)²`` for that type, 0 for the others.
    ``gradient: redistribute``: the same value, each image's gradient over its lit pixels less its mean
    (a step moves light, cannot dim the image). Not in the configs: with it the generators learned thin
    ellipses more slowly and acceptance fell at every weight tried (docs/astro.md).

ctapipe is imported inside the functions that use it: every ``ganforge`` command imports this
package to register the plugin, and importing ctapipe takes about two seconds.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Mapping, Optional

import numpy as np
import torch
from ganforge import DataInfo, Finite, NonNegative, Positive, Range

from ganforge_astro.camera import CartesianCamera, camera_from_info
from ganforge_astro.physics import Cleaning

SOFT_CLEAN_WIDTH_PE = 0.5  # τ of the soft tail cut in size-energy's size
SIDES = ("both", "above", "below")  # size-energy: which deviations from the relation are penalized
GRADIENTS = ("exact", "uniform")  # size-energy: the gradient of log size, or the same for every lit pixel


def condition_column(info: DataInfo, name: str, owner: str, required: bool = True) -> Optional[int]:
    """The column of ``y`` that holds condition ``name`` (from ``info.protocol["conditions"]``)."""
    conds = (getattr(info, "protocol", None) or {}).get("conditions") or []
    for c in conds:
        if isinstance(c, Mapping) and c.get("name") == name and "column" in c:
            return int(c["column"])
    if required:
        names = [c.get("name") for c in conds if isinstance(c, Mapping)]
        raise ValueError(f"{owner}: the dataset '{getattr(info, 'name', '?')}' has no condition '{name}' "
                         f"(its conditions: {names or 'none'}); use an IACT dataset with energies "
                         "(iact-toy, iact-file)")
    return None


class PixelDecoder:
    """Network samples ``(N, 1, side, side)`` → pixel amplitudes, differentiably (torch).

    The pixel cells come from ctapipe's cartesian mapping itself (the grid of pixel indices that
    ``image_to_cartesian_representation`` makes of ``arange(n_pixels)``), so this is
    :meth:`CartesianCamera.decode` (tested equal) with gradients.
    """

    def __init__(self, camera: CartesianCamera) -> None:
        self.camera = camera
        grid = camera.to_grid(np.arange(camera.n_pixels, dtype=float)[None], fill=-1.0)[0]
        flat = np.full(camera.n_pixels, -1, dtype=np.int64)
        cells = np.flatnonzero(grid.ravel() >= 0)
        flat[grid.ravel()[cells].astype(np.int64)] = cells
        if (flat < 0).any():
            raise ValueError(f"camera '{camera.geometry.name}': {(flat < 0).sum()} pixels have no cartesian cell")
        self.cells = torch.from_numpy(flat)
        amp = camera.amplitude
        self.scale_pe, self.norm, self.offset = amp.scale_pe, math.asinh(amp.max_pe / amp.scale_pe), amp.offset
        self.side = camera.side
        geom = camera.geometry  # the pixels' positions (n_pixels, 2), in the geometry's own units
        self.positions = torch.tensor(np.stack([np.asarray(geom.pix_x.value, dtype=np.float64),
                                                np.asarray(geom.pix_y.value, dtype=np.float64)], axis=1),
                                      dtype=torch.float32)

    def units(self, fake: torch.Tensor) -> torch.Tensor:
        """Network values of the camera pixels ``(N, n_pixels)`` (float32)."""
        if fake.ndim != 4 or fake.shape[1] != 1 or tuple(fake.shape[-2:]) != (self.side, self.side):
            raise ValueError(f"expected IACT samples of shape (N, 1, {self.side}, {self.side}), got "
                             f"{tuple(fake.shape)}")
        return fake.float().flatten(1)[:, self.cells.to(fake.device)]

    def to_pe(self, units: torch.Tensor) -> torch.Tensor:
        a = (units + 1.0) / 2.0 if self.offset else units
        return self.scale_pe * torch.sinh(a * self.norm)

    def pe(self, fake: torch.Tensor) -> torch.Tensor:
        """Photoelectrons per camera pixel ``(N, n_pixels)``."""
        return self.to_pe(self.units(fake))


def soft_lit(pe: torch.Tensor, threshold_pe: float, width_pe: float) -> torch.Tensor:
    """How much each pixel counts after the soft tail cut: ``σ((pe − b)/τ)``, or ``[pe ≥ b]`` for ``τ = 0``
    (a hard cut: the pixels below ``b`` neither count nor get a gradient)."""
    if width_pe == 0:
        return (pe >= threshold_pe).to(pe.dtype)
    return torch.sigmoid((pe - threshold_pe) / width_pe)


def _chunks(x: torch.Tensor, y: torch.Tensor, size: int = 1024):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


class SizeEnergyConstraint:
    """Generated size must follow the training data's size–energy relation (module docstring)."""

    name = "size-energy"

    def __init__(self, info: DataInfo, tolerance: float = 1.0, soft_clean_pe: float = 3.0,
                 soft_clean_width_pe: float = SOFT_CLEAN_WIDTH_PE, sides: str = "both",
                 gradient: str = "exact") -> None:
        owner = "constraint size-energy"
        if gradient not in GRADIENTS:
            raise ValueError(f"{owner}: gradient={gradient!r}; expected one of {list(GRADIENTS)} (exact: the "
                             "gradient of the size itself; uniform: the same for every lit pixel)")
        self.gradient = gradient
        if sides not in SIDES:
            raise ValueError(f"{owner}: sides={sides!r}; expected one of {list(SIDES)} (which deviations from the "
                             "relation are penalized: both, only sizes above it, only sizes below it)")
        self.sides = sides
        for key, v in (("tolerance", tolerance), ("soft_clean_pe", soft_clean_pe),
                       ("soft_clean_width_pe", soft_clean_width_pe)):
            if not v_ge0(v):
                raise ValueError(f"{owner}: {key}={v!r}; expected a finite number >= 0")
        self.decoder = PixelDecoder(camera_from_info(info, owner))
        self.energy_col = condition_column(info, "log10_energy", owner)
        self.particle_col = condition_column(info, "particle", owner, required=False)
        self.tolerance = float(tolerance)
        self.soft_clean_pe = float(soft_clean_pe)
        self.soft_clean_width_pe = float(soft_clean_width_pe)
        self.relation: Optional[dict[str, Any]] = None

    def _lit(self, pe: torch.Tensor) -> torch.Tensor:
        return soft_lit(pe, self.soft_clean_pe, self.soft_clean_width_pe)

    def _size_of(self, pe: torch.Tensor) -> torch.Tensor:
        return (pe * self._lit(pe)).sum(dim=1)

    def size(self, fake: torch.Tensor) -> torch.Tensor:
        """``S = Σ pe · σ((pe − b)/τ)`` per image (photoelectrons); ``τ = 0``: ``Σ pe · [pe ≥ b]``."""
        return self._size_of(self.decoder.pe(fake))

    def log_size(self, fake: torch.Tensor) -> torch.Tensor:
        """``log10(S + 1)`` per image. With ``gradient: uniform`` its value is the same, but its gradient is
        that of the mean network value of the lit pixels (weights ``σ((pe − b)/τ)``), scaled so that for
        bright pixels it is ``d log10 pe / dx``: every lit pixel gets the same gradient, and a step along it
        scales the light of the bright pixels by one factor, keeping the image's shape."""
        if self.gradient == "exact":
            return torch.log10(self.size(fake) + 1.0)
        units = self.decoder.units(fake)
        pe = self.decoder.to_pe(units)
        exact = torch.log10(self._size_of(pe) + 1.0)
        w = self._lit(pe.detach())
        mean_units = (units * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-6)
        slope = self.decoder.norm * (0.5 if self.decoder.offset else 1.0) / math.log(10.0)  # d log10 pe / dx
        return exact.detach() + slope * (mean_units - mean_units.detach())

    def _groups(self, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(len(y), -1)
        if self.particle_col is None:
            return torch.zeros(len(y), dtype=torch.long, device=y.device)
        return y[:, self.particle_col].round().long()

    def _energy(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(len(y), -1)[:, self.energy_col].float()

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fit ``log10(S + 1) = a_g + b_g · log10 E`` and the residual σ_g per particle type ``g``."""
        sizes, energies, groups = [], [], []
        for xb, yb in _chunks(x, y):
            sizes.append(self.size(xb).double().cpu())
            energies.append(self._energy(yb).double().cpu())
            groups.append(self._groups(yb).cpu())
        s, e, g = (torch.cat(t).numpy() for t in (sizes, energies, groups))
        rel: dict[str, Any] = {"groups": [], "intercept": [], "slope": [], "sigma": [], "count": []}
        for grp in np.unique(g):
            sel = (g == grp) & np.isfinite(e) & np.isfinite(s) & (s > 0)
            if sel.sum() < 3 or np.ptp(e[sel]) == 0:
                raise ValueError(f"constraint size-energy: particle type {int(grp)} has {int(sel.sum())} training "
                                 "images with light over a single energy; need at least 3 at different energies "
                                 "to fit log10 size against log10 E")
            ls = np.log10(s[sel] + 1.0)
            slope, intercept = np.polyfit(e[sel], ls, 1)
            sigma = float(np.std(ls - (intercept + slope * e[sel]), ddof=2)) if sel.sum() > 2 else 0.0
            rel["groups"].append(int(grp))
            rel["intercept"].append(float(intercept))
            rel["slope"].append(float(slope))
            rel["sigma"].append(max(sigma, 1e-3))
            rel["count"].append(int(sel.sum()))
        rel["size"] = ((f"sum of pe * sigmoid((pe - {self.soft_clean_pe}) / {self.soft_clean_width_pe})"
                        if self.soft_clean_width_pe else f"sum of pe * (pe >= {self.soft_clean_pe})")
                       + " over camera pixels; log10(size + 1)")
        self.relation = rel

    def residual(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(log10(S + 1) − a_g − b_g · log10 E) / σ_g`` per image."""
        if self.relation is None:
            raise RuntimeError("constraint size-energy: not calibrated: call calibrate(x, y) with the training "
                               "images first (the engine does at the start of a fit) or load_state_dict()")
        groups = self._groups(y)
        known = torch.tensor(self.relation["groups"], device=fake.device)
        idx = (groups[:, None] == known[None, :]).float().argmax(dim=1)
        missing = ~(groups[:, None] == known[None, :]).any(dim=1)
        if bool(missing.any()):
            raise ValueError(f"constraint size-energy: particle type {int(groups[missing][0])} was not in the "
                             f"training data it was calibrated on (types {self.relation['groups']})")
        param = {k: torch.tensor(self.relation[k], dtype=torch.float32, device=fake.device)[idx]
                 for k in ("intercept", "slope", "sigma")}
        pred = param["intercept"] + param["slope"] * self._energy(y).to(fake.device)
        return (self.log_size(fake) - pred) / param["sigma"]

    def penalty(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.residual(fake, y)
        r = r.abs() if self.sides == "both" else (r if self.sides == "above" else -r)
        return torch.relu(r - self.tolerance) ** 2

    def state_dict(self) -> dict[str, Any]:
        return {"relation": self.relation}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        rel = state.get("relation") if isinstance(state, Mapping) else None
        keys = ("groups", "intercept", "slope", "sigma")
        if not isinstance(rel, Mapping) or any(k not in rel for k in keys) or \
                len({len(rel[k]) for k in keys}) != 1:
            raise ValueError(f"constraint size-energy: state has no valid 'relation' (lists {list(keys)} of equal "
                             f"length), got {state!r:.200}")
        self.relation = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in rel.items()}


class NonNegativeConstraint:
    """No camera pixel below the lowest amplitude a real image has (module docstring)."""

    name = "non-negative"

    def __init__(self, info: DataInfo, min_pe: Optional[float] = None) -> None:
        owner = "constraint non-negative"
        if min_pe is not None and not (isinstance(min_pe, (int, float)) and math.isfinite(min_pe)):
            raise ValueError(f"{owner}: min_pe={min_pe!r}; expected a finite number of photoelectrons or null "
                             "(calibrated on the training images)")
        camera = camera_from_info(info, owner)
        self.decoder = PixelDecoder(camera)
        self.amplitude = camera.amplitude
        self.fixed = min_pe is not None
        self.min_pe: Optional[float] = None if min_pe is None else float(min_pe)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The lowest camera-pixel amplitude of the training images (unless ``min_pe`` was given)."""
        if self.fixed:
            return
        lows = [self.decoder.pe(xb).min() for xb, _ in _chunks(x, y)]
        self.min_pe = float(torch.stack(lows).min())

    def penalty(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.min_pe is None:
            raise RuntimeError("constraint non-negative: not calibrated: call calibrate(x, y) with the training "
                               "images, load_state_dict(), or set min_pe")
        floor = float(self.amplitude.forward(np.array([self.min_pe]))[0])  # clipped to ±max_pe like the data
        return (torch.relu(floor - self.decoder.units(fake)) ** 2).mean(dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"min_pe": self.min_pe}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        v = state.get("min_pe") if isinstance(state, Mapping) else None
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"constraint non-negative: state needs a finite 'min_pe', got {state!r:.200}")
        if not self.fixed:
            self.min_pe = float(v)


class SurvivesCleaningConstraint:
    """Differentiable "the cleaned image keeps at least ``min_pixels`` pixels" (module docstring)."""

    name = "survives-cleaning"

    def __init__(self, info: DataInfo, picture_pe: Optional[float] = None, boundary_pe: Optional[float] = None,
                 min_picture_neighbors: Optional[int] = None, min_pixels: Optional[int] = None) -> None:
        owner = "constraint survives-cleaning"
        camera = camera_from_info(info, owner)
        given = (getattr(info, "protocol", None) or {}).get("cleaning")
        base = given if isinstance(given, Mapping) else Cleaning().protocol()
        pick = lambda v, k: base[k] if v is None else v  # noqa: E731
        try:
            self.cleaning = Cleaning(float(pick(picture_pe, "picture_pe")), float(pick(boundary_pe, "boundary_pe")),
                                     int(pick(min_picture_neighbors, "min_number_picture_neighbors")),
                                     int(pick(min_pixels, "min_pixels")))
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None
        if self.cleaning.min_picture_neighbors < 0:
            raise ValueError(f"{owner}: min_picture_neighbors={self.cleaning.min_picture_neighbors}; expected >= 0")
        self.decoder = PixelDecoder(camera)
        self.geometry = camera.geometry
        m = self.cleaning.min_picture_neighbors
        nbrs = self.geometry.neighbors  # ctapipe's neighbour lists
        width = max(len(n) for n in nbrs)
        if m > width:
            raise ValueError(f"{owner}: min_picture_neighbors={m}, but pixels of camera '{self.geometry.name}' have "
                             f"at most {width} neighbours")
        pad = np.full((len(nbrs), width), len(nbrs), dtype=np.int64)  # index n_pixels: a -inf dummy pixel
        for i, n in enumerate(nbrs):
            pad[i, : len(n)] = n
        self.neighbors = torch.from_numpy(pad)
        self.k = max(1, self.cleaning.min_pixels - m)
        self.exact = m >= 1 and self.cleaning.min_pixels <= m + 1

    def score(self, fake: torch.Tensor) -> torch.Tensor:
        """``c_(k)``: the k-th largest core-pixel score per image (photoelectrons)."""
        pe = self.decoder.pe(fake)
        m = self.cleaning.min_picture_neighbors
        if m > 0:
            padded = torch.cat([pe, torch.full_like(pe[:, :1], -math.inf)], dim=1)
            around = padded[:, self.neighbors.to(pe.device)]  # (N, n_pixels, max neighbours)
            mth = around.topk(m, dim=2).values[:, :, -1]
            pe = torch.minimum(pe, mth)
        return pe.topk(self.k, dim=1).values[:, -1]

    def penalty(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.relu(1.0 - self.score(fake) / self.cleaning.picture_pe) ** 2


class PointsToSourceConstraint:
    """Generated images of one particle type (gammas) must point to the source at the camera centre (module docstring)."""

    name = "points-to-source"

    def __init__(self, info: DataInfo, particle: int = 0, quantile: float = 0.9, soft_clean_pe: float = 3.0,
                 soft_clean_width_pe: float = SOFT_CLEAN_WIDTH_PE, gradient: str = "exact") -> None:
        owner = "constraint points-to-source"
        if gradient not in ("exact", "redistribute"):
            raise ValueError(f"{owner}: gradient={gradient!r}; expected 'exact' or 'redistribute'")
        self.gradient = gradient
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"{owner}: quantile={quantile}; expected a number in (0, 1)")
        camera = camera_from_info(info, owner)
        self.decoder = PixelDecoder(camera)
        self.particle_col = condition_column(info, "particle", owner, required=False)
        self.particle, self.quantile = int(particle), float(quantile)
        self.soft_clean_pe, self.soft_clean_width_pe = float(soft_clean_pe), float(soft_clean_width_pe)
        self.sin_alpha_max: Optional[float] = None  # calibrated: the quantile of the real images' sin(alpha)

    def _weights(self, pe: torch.Tensor) -> torch.Tensor:
        """Each pixel's light after ``size-energy``'s soft tail cut (negative amplitudes weigh nothing)."""
        return pe.clamp_min(0) * soft_lit(pe, self.soft_clean_pe, self.soft_clean_width_pe)

    def sin_alpha(self, fake: torch.Tensor) -> torch.Tensor:
        """``|sin(alpha)|`` per image from the light-weighted second moments (Hillas' alpha, differentiable):
        the angle between the major axis and the line from the camera centre to the centroid."""
        units = self.decoder.units(fake)
        if self.gradient == "redistribute":
            # the same values; the gradient of each image's lit pixels less its mean over them, so that a
            # step moves light between lit pixels (turns the image) and cannot dim the image as a whole
            lit = (self.decoder.to_pe(units.detach()) >= self.soft_clean_pe).to(units.dtype)
            delta = units - units.detach()  # zero, with the identity as its gradient
            units = units - lit * (delta * lit).sum(1, keepdim=True) / lit.sum(1, keepdim=True).clamp_min(1)
        w = self._weights(self.decoder.to_pe(units))
        x, y = self.decoder.positions.to(w.device).unbind(1)
        total = w.sum(1) + 1e-6
        cx, cy = (w * x).sum(1) / total, (w * y).sum(1) / total
        dx, dy = x[None] - cx[:, None], y[None] - cy[:, None]
        sxx, syy, sxy = (w * dx * dx).sum(1) / total, (w * dy * dy).sum(1) / total, (w * dx * dy).sum(1) / total
        half = (sxx - syy) / 2
        r = torch.sqrt(half * half + sxy * sxy + 1e-12)
        cos2psi, sin2psi = half / r, sxy / r  # the major axis' angle psi, doubled
        c2 = cx * cx + cy * cy + 1e-12
        cos2phi, sin2phi = (cx * cx - cy * cy) / c2, 2 * cx * cy / c2  # the centroid's angle phi, doubled
        sin2 = (1 - (cos2psi * cos2phi + sin2psi * sin2phi)) / 2  # sin^2(psi - phi)
        return torch.sqrt(sin2.clamp_min(0) + 1e-12)

    def _selected(self, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(len(y), -1)
        if self.particle_col is None:
            return torch.ones(len(y), dtype=torch.bool, device=y.device)
        return y[:, self.particle_col].round().long() == self.particle

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        values = [self.sin_alpha(xb)[self._selected(yb).to(xb.device)].double().cpu() for xb, yb in _chunks(x, y)]
        v = torch.cat(values).numpy()
        v = v[np.isfinite(v)]
        if len(v) < 3:
            raise ValueError(f"constraint points-to-source: {len(v)} training images of particle type {self.particle}; "
                             "need at least 3 to calibrate the allowed alpha")
        self.sin_alpha_max = max(float(np.quantile(v, self.quantile)), 1e-3)

    def penalty(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.sin_alpha_max is None:
            raise RuntimeError("constraint points-to-source: not calibrated: call calibrate(x, y) with the training "
                               "images first (the engine does at the start of a fit) or load_state_dict()")
        excess = torch.relu(self.sin_alpha(fake) / self.sin_alpha_max - 1.0) ** 2
        return excess * self._selected(y).to(excess.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"sin_alpha_max": self.sin_alpha_max, "quantile": self.quantile, "particle": self.particle}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        v = state.get("sin_alpha_max") if isinstance(state, Mapping) else None
        if not v_ge0(v) or v == 0:
            raise ValueError(f"constraint points-to-source: state has no valid 'sin_alpha_max' (a number > 0), "
                             f"got {state!r:.200}")
        self.sin_alpha_max = float(v)


def v_ge0(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


# -- factories (their signatures are the config schema) -------------------------------------------


def size_energy(info: DataInfo, tolerance: Annotated[float, NonNegative] = 1.0,
                soft_clean_pe: Annotated[float, NonNegative] = 3.0,
                soft_clean_width_pe: Annotated[float, NonNegative] = SOFT_CLEAN_WIDTH_PE,
                sides: Literal["both", "above", "below"] = "both",
                gradient: Literal["exact", "uniform"] = "exact") -> SizeEnergyConstraint:
    """Generated image size must follow the training data's size–energy relation per particle type.

    Calibrated at the start of a fit: ``log10(size + 1) = a + b · log10 E`` with residual scatter σ per
    particle type (stored with the run). Penalty ``relu(|residual| / σ − tolerance)²`` (``sides: both``;
    ``above``/``below`` penalize one side only).

    Args:
        info: The dataset's info (injected): an IACT dataset with a ``log10_energy`` condition.
        tolerance: Allowed distance from the relation, in units of its residual scatter σ.
        soft_clean_pe: Pixels below this many photoelectrons (a soft step of ``soft_clean_width_pe``) do not
            count towards the size, as the boundary threshold of cleaning; 0 counts every pixel.
        soft_clean_width_pe: Width τ of the soft step, in photoelectrons; 0 makes it a hard cut (pixels
            below ``soft_clean_pe`` neither count nor receive a gradient).
        sides: Which deviations are penalized: ``both``, ``above`` (only sizes above the relation: images
            too bright for their energy) or ``below`` (only too faint ones).
        gradient: ``exact``: the gradient of the penalty itself, which in network units grows with a
            pixel's brightness, so it dims an image's bright core more than its edge; ``uniform``: the
            same value with the same gradient for every lit pixel, which scales the light without
            changing the shape.
    """
    return SizeEnergyConstraint(info, tolerance, soft_clean_pe, soft_clean_width_pe, sides, gradient)


def non_negative(info: DataInfo, min_pe: Annotated[Optional[float], Finite] = None) -> NonNegativeConstraint:
    """No camera pixel amplitude below the lowest one a real image has.

    Penalty: mean over camera pixels of the squared excess below it, in network units.

    Args:
        info: The dataset's info (injected): an IACT dataset.
        min_pe: The lowest allowed amplitude (photoelectrons); ``null``: the training images' minimum
            (calibrated at the start of a fit and stored with the run).
    """
    return NonNegativeConstraint(info, min_pe)


def survives_cleaning(info: DataInfo, picture_pe: Annotated[Optional[float], Positive] = None,
                      boundary_pe: Annotated[Optional[float], Positive] = None,
                      min_picture_neighbors: Annotated[Optional[int], NonNegative] = None,
                      min_pixels: Annotated[Optional[int], Positive] = None) -> SurvivesCleaningConstraint:
    """A generated image must survive tail-cuts cleaning (a differentiable surrogate, exact by default).

    Penalty ``relu(1 − c_(k) / picture_pe)²``, ``c_i = min(pe_i, m-th brightest neighbour)``; ``null``
    thresholds: the dataset's cleaning, else 6/3 pe, 2 neighbours, 3 pixels (the metrics' defaults).

    Args:
        info: The dataset's info (injected): an IACT dataset.
        picture_pe: Picture threshold (photoelectrons).
        boundary_pe: Boundary threshold (photoelectrons; checked to be <= picture_pe).
        min_picture_neighbors: Neighbours a picture pixel needs above the picture threshold.
        min_pixels: Pixels the cleaned image must keep.
    """
    return SurvivesCleaningConstraint(info, picture_pe, boundary_pe, min_picture_neighbors, min_pixels)


def points_to_source(info: DataInfo, particle: Annotated[int, NonNegative] = 0,
                     quantile: Annotated[float, Range(0.0, 1.0, low_open=True, high_open=True)] = 0.9,
                     soft_clean_pe: Annotated[float, NonNegative] = 3.0,
                     soft_clean_width_pe: Annotated[float, NonNegative] = SOFT_CLEAN_WIDTH_PE,
                     gradient: Literal["exact", "redistribute"] = "exact") -> PointsToSourceConstraint:
    """Generated images of one particle type (gammas) must point to the source at the camera centre.

    Alpha is the angle between an image's major axis and the line from the camera centre to its centroid
    (Hillas); a gamma from a point source at the centre has a small one. From the light-weighted second
    moments after a soft tail cut (as ``size-energy``'s size), differentiably. Calibrated at the start of
    a fit: ``sin α_max``, the ``quantile`` of the training images' ``|sin α|`` for that particle type
    (stored with the run). Penalty ``relu(|sin α| / sin α_max − 1)²`` for that particle type, 0 for others.

    Args:
        info: The dataset's info (injected): an IACT dataset.
        particle: The particle type that must point (``iact-toy``: 0, gamma); without a ``particle``
            condition every image.
        quantile: The fraction of the real images' alphas allowed without penalty, in (0, 1).
        soft_clean_pe: Pixels below this many photoelectrons (a soft step) do not count, as in ``size-energy``.
        soft_clean_width_pe: Width of the soft step in photoelectrons; 0: a hard cut.
        gradient: ``exact``: the penalty's own gradient, which can dim an image until it fails cleaning;
            ``redistribute``: the same value, with each image's gradient over its lit pixels (those at
            ``soft_clean_pe`` or more) less its mean over them, so a step moves light between them.
    """
    return PointsToSourceConstraint(info, particle, quantile, soft_clean_pe, soft_clean_width_pe, gradient)
