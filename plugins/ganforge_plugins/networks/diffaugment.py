"""DiffAugment (Zhao et al. 2020, arXiv 2006.10738): differentiable augmentation in front of any discriminator.

With little data D memorises the training set and its feedback to G degrades. DiffAugment applies
the same family of random, differentiable transformations to every image D sees, real and
generated, in both the D and the G step; G's gradient flows back through the augmentation.
Augmenting the reals only would teach G to produce augmented images (the paper's Sec. 3.1).

The wrapper ``diffaugment`` holds the base discriminator (any registered one) and augments the
input of every call in training mode. The ops (the paper's Sec. 3, "Color", "Translation",
"Cutout") are pure functions of the image and explicit parameters, so each one is testable
against a hand computation; :func:`draw` samples their parameters.

Randomness: drawn from torch's global generator on the image's device. The engine re-seeds it at
the start of every iteration from (run seed, rank, iteration) (``GANModule._seeded_globals``), and
the draws inside an iteration happen in a fixed order, so the augmentation is a function of
(seed, rank, iteration): reproducible, independent across ranks like the latent noise, and
identical after a resume (nothing to save in checkpoints).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Optional

import torch
from torch import nn

from ganforge import ComponentRef, DataInfo, Range, Register, build_component, hookimpl

Tensor = torch.Tensor

POLICIES = ("color", "translation", "cutout")


# -- the operations, as functions of explicit parameters ----------------------------------------------


def brightness(x: Tensor, b: Tensor) -> Tensor:
    """``x + b``, one offset per sample (the paper draws ``b`` from [-0.5, 0.5])."""
    return x + b.view(-1, 1, 1, 1).to(x.dtype)


def saturation(x: Tensor, s: Tensor) -> Tensor:
    """``m + s (x - m)`` with ``m`` the per-pixel mean over channels (``s`` in [0, 2]); a no-op on one channel.

    Computed as ``x + (s - 1)(x - m)``: the same value, and exactly ``x`` for ``s = 1`` (a skipped sample)."""
    m = x.mean(dim=1, keepdim=True)
    return x + (s.view(-1, 1, 1, 1).to(x.dtype) - 1) * (x - m)


def contrast(x: Tensor, c: Tensor) -> Tensor:
    """``m + c (x - m)`` with ``m`` the per-image mean over channels and pixels (``c`` in [0.5, 1.5]);
    computed as ``x + (c - 1)(x - m)``, exactly ``x`` for ``c = 1``."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return x + (c.view(-1, 1, 1, 1).to(x.dtype) - 1) * (x - m)


def translate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Shift each image by integer ``(dy, dx)`` pixels (down, right), filling with zeros.

    ``out[n, :, i, j] = x[n, :, i - dy[n], j - dx[n]]`` where that pixel exists, else 0. An index
    gather from a zero-padded copy: differentiable in ``x``.
    """
    n, _, h, w = x.shape
    pad = int(max(dy.abs().max().item() if dy.numel() else 0, dx.abs().max().item() if dx.numel() else 0))
    xp = nn.functional.pad(x, (pad, pad, pad, pad))
    rows = torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1).long() + pad  # (N, H)
    cols = torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1).long() + pad  # (N, W)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = xp.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: Tensor) -> Tensor:
    """Zero a ``size`` x ``size`` square per image: rows ``cy - size//2 ... + size - 1``, same for columns,
    clipped at the border (a square near the edge is partly outside). ``size = 0`` leaves the image."""
    n, _, h, w = x.shape
    top = (cy - torch.div(size, 2, rounding_mode="floor")).view(n, 1)
    left = (cx - torch.div(size, 2, rounding_mode="floor")).view(n, 1)
    i = torch.arange(h, device=x.device).view(1, h)
    j = torch.arange(w, device=x.device).view(1, w)
    inside_r = (i >= top) & (i < top + size.view(n, 1))  # (N, H)
    inside_c = (j >= left) & (j < left + size.view(n, 1))  # (N, W)
    keep = ~(inside_r.view(n, 1, h, 1) & inside_c.view(n, 1, 1, w))
    return x * keep.to(x.dtype)


# -- drawing the parameters ---------------------------------------------------------------------------


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` → ``("color", "translation")``; unknown or repeated names are errors."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in POLICIES:
            close = difflib.get_close_matches(name, POLICIES, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"policy: unknown augmentation {name!r} in {policy!r}.{hint} Valid: {', '.join(POLICIES)} "
                "(comma-separated, e.g. 'color,translation,cutout'; '' for none)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"policy: {policy!r} names an augmentation twice; name each of {', '.join(POLICIES)} at most once")
    return names


def _applied(n: int, p: float, device: torch.device) -> Tensor:
    """Per sample: is this op applied (probability ``p``)? Drawn even for p = 1, so the RNG stream does not depend on p."""
    return torch.rand(n, device=device) < p


def augment(x: Tensor, policy: tuple[str, ...], translation: float = 0.125, cutout_ratio: float = 0.5,
            p: float = 1.0) -> Tensor:
    """Apply ``policy``'s ops in order, each to each sample with probability ``p``, from the global RNG.

    Ranges from the paper (Sec. 3): brightness in [-0.5, 0.5], saturation in [0, 2], contrast in
    [0.5, 1.5]; translation by up to ``translation`` of the image size (rounded to pixels); cutout of
    a square with side ``cutout_ratio`` of the image size, centred anywhere in the image.
    A sample an op skips gets that op's identity parameters (no data-dependent branches).
    """
    n, _, h, w = x.shape
    dev = x.device
    for op in policy:
        on = _applied(n, p, dev)
        if op == "color":
            b = torch.where(on, torch.rand(n, device=dev) - 0.5, 0.0)
            s = torch.where(on, torch.rand(n, device=dev) * 2.0, 1.0)
            c = torch.where(on, torch.rand(n, device=dev) + 0.5, 1.0)
            x = contrast(saturation(brightness(x, b), s), c)
        elif op == "translation":
            sy, sx = int(h * translation + 0.5), int(w * translation + 0.5)
            dy = torch.randint(-sy, sy + 1, (n,), device=dev) * on
            dx = torch.randint(-sx, sx + 1, (n,), device=dev) * on
            x = translate(x, dy, dx)
        elif op == "cutout":
            side = int(min(h, w) * cutout_ratio + 0.5)
            cy = torch.randint(0, h, (n,), device=dev)
            cx = torch.randint(0, w, (n,), device=dev)
            x = cutout(x, cy, cx, side * on.long())
    return x


# -- the discriminator wrapper ------------------------------------------------------------------------


class DiffAugmentDiscriminator(nn.Module):
    """``D(T(x), y)`` with ``T`` a random differentiable augmentation in training mode, ``D(x, y)`` in eval mode.

    The output (logits, or a tuple with auxiliary outputs) is the base discriminator's.
    """

    def __init__(self, base: nn.Module, policy: tuple[str, ...], translation: float, cutout: float, p: float) -> None:
        super().__init__()
        self.base = base
        self.policy = policy
        self.translation = translation
        self.cutout = cutout
        self.p = p

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Any:
        if self.training and self.policy and self.p > 0:
            x = augment(x, self.policy, self.translation, self.cutout, self.p)
        return self.base(x, y)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)!r}, translation={self.translation}, cutout={self.cutout}, p={self.p}"


def diffaugment_discriminator(
    info: DataInfo,
    base: Annotated[str, ComponentRef("discriminator", params="base_params")] = "dcgan",
    base_params: Optional[dict[str, Any]] = None,
    policy: str = "color,translation,cutout",
    translation: Annotated[float, Range(0.0, 0.5)] = 0.125,
    cutout: Annotated[float, Range(0.0, 1.0)] = 0.5,
    p: Annotated[float, Range(0.0, 1.0)] = 1.0,
) -> DiffAugmentDiscriminator:
    """DiffAugment (Zhao et al. 2020): real and generated images are augmented alike before ``base``.

    For small image data sets (the paper: 100-shot and 10 % CIFAR). In training mode every call
    augments; in eval mode the base discriminator sees the images unchanged.

    Args:
        info: The dataset's description (injected by the engine); must be images.
        base: The registered discriminator to wrap (any image discriminator, third-party ones too).
        base_params: Parameters of the base discriminator, e.g. ``{width: 64, spectral_norm: true}``.
        policy: Comma-separated ops, applied in this order: ``color`` (brightness, saturation,
            contrast), ``translation``, ``cutout``. The paper's default is all three.
        translation: Largest shift, as a fraction of the image size (paper: 1/8), zero-filled.
        cutout: Side of the cut-out square, as a fraction of the image size (paper: 1/2).
        p: Probability that each op is applied to each sample (1.0 in the paper; 0 is the identity).
    """
    ops = parse_policy(policy)
    if info.kind != "image" or len(info.sample_shape) != 3:
        raise ValueError(
            f"diffaugment augments images (C, H, W), but dataset '{info.name}' is of kind '{info.kind}' with sample "
            f"shape {tuple(info.sample_shape)}; use it with an image dataset (digits, image-folder, tensor-file "
            "with images), or use the base discriminator directly"
        )
    if base == "diffaugment":
        raise ValueError("base: 'diffaugment' cannot wrap itself; name the network to augment for, e.g. 'dcgan'")
    inner = build_component("discriminator", base, base_params, name_key="discriminator.base",
                            params_key="discriminator.base_params", info=info)
    return DiffAugmentDiscriminator(inner, ops, float(translation), float(cutout), float(p))


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register("diffaugment", diffaugment_discriminator,
             description="DiffAugment (Zhao et al. 2020): colour/translation/cutout on real and fake before any D.")
