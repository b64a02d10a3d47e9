"""Shared parts of the image networks: input checks, initialised layers, conditioning, attention.

The conditioning conventions (class labels vs continuous conditions, ``concat`` / ``cbn`` /
``projection``) are described in docs/networks.md.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ganforge import DataInfo

MIN_RESOLUTION = 8
MAX_RESOLUTION = 128

# Radford et al. 2016, section 4: LeakyReLU slope 0.2 in D, all weights from N(0, 0.02).
LEAKY_SLOPE = 0.2
DCGAN_INIT_STD = 0.02

Init = Literal["normal", "xavier", "orthogonal", "zeros"]


# -- checks ---------------------------------------------------------------------------------------


def check_int(value: int, param: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}, got {value!r}; set {param} to at least {minimum}.")


def check_choice(value: str, param: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{param}: unknown value {value!r}; expected one of {', '.join(map(repr, choices))}.")


def image_geometry(info: DataInfo, owner: str) -> tuple[int, int, int]:
    """Check that ``info`` describes square power-of-two images; return ``(C, H, stages)``.

    ``stages = log2(H) - 2`` is the number of resolution doublings from 4x4 to ``H``x``H``.

    Raises:
        ValueError: naming ``info.sample_shape``, its value, what is expected and the fix.
    """
    shape = tuple(int(s) for s in info.sample_shape)
    data = f" of dataset '{info.name}'" if info.name else ""
    allowed = ", ".join(str(2**i) for i in range(3, 8))
    if len(shape) != 3:
        raise ValueError(
            f"{owner}: info.sample_shape{data} is {shape}; image networks expect (C, H, W). "
            "Use an image dataset, or the 'mlp' networks for points and vectors."
        )
    c, h, w = shape
    if c < 1:
        raise ValueError(f"{owner}: info.sample_shape{data} is {shape}; expected at least 1 channel.")
    if h != w:
        raise ValueError(
            f"{owner}: info.sample_shape{data} is {shape}; expected square images (H == W), got H={h}, W={w}. "
            "Crop, pad or resize the images to a square power-of-two size."
        )
    if h < MIN_RESOLUTION or h > MAX_RESOLUTION or h & (h - 1):
        raise ValueError(
            f"{owner}: info.sample_shape{data} is {shape}; expected H == W a power of two from "
            f"{MIN_RESOLUTION} to {MAX_RESOLUTION} ({allowed}), got {h}. "
            "Resize or pad the images to one of these sizes."
        )
    return c, h, int(math.log2(h)) - 2


def check_attention(value: Optional[int], valid: list[int], owner: str) -> None:
    if value is not None and value not in valid:
        raise ValueError(
            f"{owner}: attention_resolution={value!r} is not a feature-map resolution of this network; "
            f"expected one of {', '.join(map(str, valid))} or null (no self-attention)."
        )


def check_aux(aux_classes: bool, info: DataInfo, owner: str) -> None:
    if aux_classes and info.num_classes <= 0:
        raise ValueError(
            f"{owner}: aux_classes=True needs class-labelled data, but info.num_classes={info.num_classes}. "
            "Set aux_classes to false, or use a dataset with class labels."
        )


def prepare_y(y: Optional[torch.Tensor], info: DataInfo, n: int, owner: str) -> Optional[torch.Tensor]:
    """Validate ``y`` against ``info``: class labels → ``long (N,)``, conditions → ``(N, cond_dim)``,
    both → float ``(N, 1 + cond_dim)`` (class index in column 0, see :meth:`DataInfo.split_conditions`).

    No range check on class indices: it would synchronize with the GPU on every step
    (``nn.Embedding`` raises on an out-of-range index anyway).
    """
    if not info.conditional:
        if y is not None:
            raise ValueError(
                f"{owner} is unconditional (the dataset has no labels or conditions) but got y of shape "
                f"{tuple(y.shape)}; pass y=None."
            )
        return None
    if y is None:
        what = " and ".join(([f"{info.num_classes} classes"] if info.num_classes > 0 else [])
                            + ([f"{info.cond_dim} conditions"] if info.cond_dim > 0 else []))
        raise ValueError(f"{owner} is conditional ({what}) and needs y; got y=None.")
    if info.num_classes > 0 and info.cond_dim > 0:
        width = 1 + info.cond_dim
        if not y.is_floating_point() or y.numel() != n * width:
            raise ValueError(
                f"{owner}: with {info.num_classes} classes and {info.cond_dim} conditions y must be a float tensor of "
                f"shape ({n}, {width}) (column 0 the class index, then the conditions), got dtype {y.dtype} and "
                f"shape {tuple(y.shape)}; build it with info.join_conditions(labels, conds)."
            )
        return y.reshape(n, width)
    if info.num_classes > 0:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(
                f"{owner}: class labels y must be an integer tensor of class indices, got dtype {y.dtype}; "
                "convert with y.long()."
            )
        if y.numel() != n:
            raise ValueError(f"{owner}: expected {n} class labels (shape ({n},)), got y of shape {tuple(y.shape)}.")
        return y.reshape(n).long()
    if not y.is_floating_point():
        raise ValueError(f"{owner}: continuous conditions y must be a float tensor, got dtype {y.dtype}.")
    if y.numel() != n * info.cond_dim:
        raise ValueError(
            f"{owner}: expected conditions of shape ({n}, {info.cond_dim}), got y of shape {tuple(y.shape)}."
        )
    return y.reshape(n, info.cond_dim)


def check_input(t: torch.Tensor, shape: tuple[int, ...], owner: str, what: str) -> None:
    if tuple(t.shape[1:]) != shape:
        expected = ", ".join(["N", *map(str, shape)])
        raise ValueError(f"{owner}: expected {what} of shape ({expected}), got {tuple(t.shape)}.")


# -- layers ---------------------------------------------------------------------------------------


def init_layer(module: nn.Module, init: Init, sn: bool, gain: float = 1.0) -> nn.Module:
    """Initialise ``module``'s weight (bias to zero), then optionally wrap it in spectral norm.

    Initialising before ``spectral_norm`` keeps its power-iteration vectors consistent with the
    weight it normalizes (Miyato et al. 2018 run one power iteration per step).
    """
    weight = module.weight
    if init == "normal":
        nn.init.normal_(weight, 0.0, DCGAN_INIT_STD)
    elif init == "xavier":
        nn.init.xavier_uniform_(weight, gain=gain)
    elif init == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    else:
        if sn:
            raise ValueError("internal: a zero-initialised weight cannot be spectrally normalized (sigma = 0).")
        nn.init.zeros_(weight)
    bias = getattr(module, "bias", None)
    if bias is not None:
        nn.init.zeros_(bias)
    return _spectral_norm(module) if sn else module


def conv(cin: int, cout: int, k: int, init: Init, sn: bool, gain: float = 1.0, bias: bool = True) -> nn.Module:
    return init_layer(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), init, sn, gain)


def linear(cin: int, cout: int, init: Init, sn: bool, bias: bool = True) -> nn.Module:
    return init_layer(nn.Linear(cin, cout, bias=bias), init, sn)


def cond_features(info: DataInfo) -> int:
    """Length of the raw condition vector: one-hot classes, the continuous conditions, or both."""
    return info.num_classes + info.cond_dim


def condition_vector(y: torch.Tensor, info: DataInfo, dtype: torch.dtype) -> torch.Tensor:
    """One-hot class labels, the continuous conditions, or both concatenated (one-hot first), as
    float ``(N, features)``; ``y`` as :func:`prepare_y` returns it.

    A bias-free linear map of a one-hot vector is a per-class lookup table, so the same layer
    implements categorical conditional BN (Miyato & Koyama 2018) and its continuous analogue;
    with both, the map is the sum of the two.
    """
    if info.num_classes > 0 and info.cond_dim > 0:
        labels, conds = info.split_conditions(y, check=False)
        return torch.cat([F.one_hot(labels, info.num_classes).to(dtype), conds.to(dtype)], dim=1)
    if info.num_classes > 0:
        return F.one_hot(y, info.num_classes).to(dtype)
    return y.to(dtype)


class ConditionEmbedding(nn.Module):
    """``y`` → ``(N, dim)``: ``nn.Embedding`` for class labels, bias-free ``nn.Linear`` for conditions;
    with both, the class embedding plus the projected conditions, ``E[k] + V s``."""

    def __init__(self, info: DataInfo, dim: int, init: Init, sn: bool = False) -> None:
        super().__init__()
        self.info = info
        self.classes = info.num_classes > 0
        table = nn.Embedding(info.num_classes, dim) if self.classes else nn.Linear(info.cond_dim, dim, bias=False)
        self.table = init_layer(table, init, sn)
        # Both: ``table`` embeds the class, ``cond_table`` projects the conditions (created second, so
        # class-only and condition-only networks draw their initial weights exactly as before).
        both = self.classes and info.cond_dim > 0
        self.cond_table = init_layer(nn.Linear(info.cond_dim, dim, bias=False), init, sn) if both else None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.cond_table is not None:
            labels, conds = self.info.split_conditions(y, check=False)
            return self.table(labels) + self.cond_table(conds.to(next(self.cond_table.parameters()).dtype))
        if self.classes:
            return self.table(y)
        return self.table(y.to(next(self.table.parameters()).dtype))


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with the ``forward(x, c)`` signature of :class:`ConditionalBatchNorm`."""

    def __init__(self, num_features: int, init: Init) -> None:
        super().__init__(num_features)
        if init == "normal":  # Radford et al.'s BN scale init N(1, 0.02)
            nn.init.normal_(self.weight, 1.0, DCGAN_INIT_STD)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: ARG002
        return super().forward(x)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are linear in a condition vector ``c``.

    ``BN(x) * (1 + W_g c) + W_b c`` (de Vries et al. 2017; Dumoulin et al. 2017; BigGAN's
    class-conditional BN where ``c`` = [shared class embedding, z chunk]). Zero-initialised
    ``W_g, W_b`` start as plain batch norm (Miyato & Koyama 2018 initialise gamma=1, beta=0).
    """

    def __init__(self, num_features: int, cond_features: int, init: Init, sn: bool) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = linear(cond_features, num_features, init, sn, bias=False)
        self.bias = linear(cond_features, num_features, init, sn, bias=False)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        if c is None:
            raise ValueError("ConditionalBatchNorm needs a condition vector c; got None.")
        gain = 1.0 + self.gain(c)[:, :, None, None]
        return self.bn(x) * gain + self.bias(c)[:, :, None, None]


def make_norm(num_features: int, cond_features: int, init: Init, cbn_init: Init, sn: bool) -> nn.Module:
    if cond_features > 0:
        return ConditionalBatchNorm(num_features, cond_features, cbn_init, sn)
    return BatchNorm(num_features, init)


class SelfAttention(nn.Module):
    """Self-attention block of SAGAN (Zhang et al. 2019) as used in BigGAN.

    ``x + gamma * o(softmax(theta(x)^T phi(x)) g(x))``, with ``phi`` and ``g`` max-pooled 2x to cut
    the cost fourfold and ``gamma`` starting at 0 so the block begins as the identity.
    """

    def __init__(self, channels: int, init: Init, sn: bool) -> None:
        super().__init__()
        key = max(channels // 8, 1)
        value = max(channels // 2, 1)
        self.theta = conv(channels, key, 1, init, sn, bias=False)
        self.phi = conv(channels, key, 1, init, sn, bias=False)
        self.g = conv(channels, value, 1, init, sn, bias=False)
        self.o = conv(value, channels, 1, init, sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (N, key, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (N, key, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (N, value, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, HW, HW/4)
        o = self.o((g @ beta.transpose(1, 2)).reshape(n, -1, h, w))
        return x + self.gamma * o


def check_minibatch_std(group: int, owner: str) -> None:
    if not isinstance(group, int) or isinstance(group, bool) or group < 0 or group == 1:
        raise ValueError(
            f"{owner}: minibatch_std={group!r} is not a group size; use 0 (off) or an integer >= 2 "
            "(4 in ProGAN/StyleGAN) that divides the batch per device."
        )


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN, section 3): one more feature map.

    The batch is cut into consecutive groups of ``group`` samples. Per group: the standard
    deviation over the group of every feature at every position (biased, ``sqrt(var + 1e-8)``),
    averaged over features and positions to one number, replicated as a constant ``(1, H, W)``
    map for each sample of the group and concatenated as the last channel. D then sees how
    varied a group is, so a generator that collapses to one mode is caught (group size 4 in
    StyleGAN, Karras et al. 2019). The group must divide the batch: see :attr:`group`.
    """

    EPS = 1e-8

    def __init__(self, group: int, owner: str) -> None:
        super().__init__()
        self.group = group
        self.owner = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.group
        if n % g:
            raise ValueError(
                f"{self.owner}: minibatch_std={g} must divide the batch each device gives the discriminator, "
                f"got a batch of {n}; set train.batch_size to a multiple of {g} x the number of processes, "
                "or change discriminator.minibatch_std."
            )
        groups = x.reshape(n // g, g, c, h, w).float()  # float32 statistics under mixed precision
        std = (groups.var(dim=1, unbiased=False) + self.EPS).sqrt()  # (n/g, c, h, w)
        stat = std.mean(dim=(1, 2, 3)).to(x.dtype)  # (n/g,)
        feature = stat.repeat_interleave(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, feature], dim=1)


class DiscriminatorHead(nn.Module):
    """Features ``h (N, F)`` → logits ``(N,)`` [+ class logits].

    ``linear(h) + <embed(y), h>`` with projection (Miyato & Koyama 2018, eq. 3: the inner
    product with a class embedding replaces concatenating ``y``); for continuous conditions the
    embedding is linear, ``s^T V h``; with both, ``<E[k], h> + s^T V h`` (:class:`ConditionEmbedding`
    sums the two). ``aux_classes`` adds AC-GAN's classifier (Odena et al. 2017).
    """

    def __init__(self, features: int, info: DataInfo, project: bool, aux_classes: bool, init: Init, sn: bool) -> None:
        super().__init__()
        self.linear = linear(features, 1, init, sn)
        self.embed = ConditionEmbedding(info, features, init, sn) if project else None
        self.aux = linear(features, info.num_classes, init, sn) if aux_classes else None

    def forward(
        self, h: torch.Tensor, y: Optional[torch.Tensor]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("projection discriminator needs y; got None.")
            logits = logits + (self.embed(y) * h).sum(dim=1)
        if self.aux is not None:
            return logits, self.aux(h)
        return logits


class ConditionMap(nn.Module):
    """``y`` → one ``(N, 1, H, W)`` map concatenated to D's input ("concat" conditioning).

    A learned map per class (or a linear map of the conditions) rather than a one-hot tiled
    over ``num_classes`` channels: one extra input channel whatever the number of classes.
    """

    def __init__(self, info: DataInfo, resolution: int, init: Init) -> None:
        super().__init__()
        self.resolution = resolution
        self.embed = ConditionEmbedding(info, resolution * resolution, init)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embed(y).reshape(-1, 1, self.resolution, self.resolution)


class ProjectingGenerator(nn.Module):
    """What the ``dcgan`` and ``resnet`` generators share: parameter checks, conditioning by an
    embedding concatenated to ``z`` (``concat``) or by conditional batch norm (``cbn``), and the
    start of ``forward`` up to the 4x4 projection."""

    def _setup(self, info: DataInfo, owner: str, latent_dim: int, width: int, embed_dim: int, conditioning: str,
               choices: tuple[str, ...], init: Init) -> tuple[int, int, int, int]:
        """Validate and build the conditioning; returns ``(channels, stages, cbn_features, input_dim)``."""
        c, h, stages = image_geometry(info, owner)
        check_int(latent_dim, "latent_dim")
        check_int(width, "width")
        check_int(embed_dim, "embed_dim")
        check_choice(conditioning, "conditioning", choices)
        self.info = info
        self.owner = owner
        self.latent_shape: tuple[int, ...] = (latent_dim,)
        self.sample_shape: tuple[int, ...] = (c, h, h)
        self.conditioning = conditioning if info.conditional else "none"
        # Concat: the conditional GAN of Mirza & Osindero 2014, an embedding of y joins z.
        self.embed = ConditionEmbedding(info, embed_dim, init) if self.conditioning == "concat" else None
        cbn = cond_features(info) if self.conditioning == "cbn" else 0
        return c, stages, cbn, latent_dim + (embed_dim if self.embed is not None else 0)

    def _start(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The projected 4x4 feature map and the CBN condition vector (``None`` unless ``cbn``)."""
        check_input(z, self.latent_shape, self.owner, "noise")
        n = z.shape[0]
        y = prepare_y(y, self.info, n, self.owner)
        cond = None
        if self.embed is not None:
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        elif self.conditioning == "cbn":
            cond = condition_vector(y, self.info, z.dtype)
        return self.project(z).reshape(n, self.chans[0], 4, 4), cond
