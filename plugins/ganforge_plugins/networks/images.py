"""Convolutional generators and discriminators for square images: ``dcgan``, ``resnet``, ``biggan``.

Each name is registered as both a generator and a discriminator (``generator.name: dcgan``,
``discriminator.name: dcgan``). All of them accept any number of channels and any square
power-of-two resolution from 8 to 128 (``info.sample_shape == (C, H, H)``); the number of
up/down-sampling stages follows from ``H`` (``log2(H) - 2`` stages between 4x4 and ``H``x``H``).

Conditioning follows the dataset's :class:`ganforge.DataInfo`:

* ``info.num_classes > 0``: ``y`` is a ``long`` tensor of class indices, shape ``(N,)``;
* ``info.cond_dim > 0``: ``y`` is a float tensor of continuous conditions, shape ``(N, cond_dim)``;
  wherever a class embedding (``nn.Embedding``) would be used, a bias-free linear map of ``y``
  takes its place (for one-hot ``y`` the two are the same thing);
* neither: ``y`` must be ``None``.

Generators end in ``tanh``, so they suit data normalized to ``[-1, 1]`` (the image datasets'
convention). Discriminators return logits ``(N,)``, or ``(logits, class_logits)`` with
``aux_classes=True`` (AC-GAN, Odena et al. 2017).

Weight initialisation: ``dcgan`` uses N(0, 0.02) (Radford et al. 2016); ``resnet`` uses Xavier-
uniform with gain sqrt(2) on the residual 3x3 convolutions and 1 elsewhere (as common SNGAN
implementations do); ``biggan`` uses orthogonal initialisation (Saxe et al. 2014, as Brock et al.
2019 do).
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ganforge import DataInfo, Register, hookimpl

MIN_RESOLUTION = 8
MAX_RESOLUTION = 128

# Radford et al. 2016, section 4: LeakyReLU slope 0.2 in D, all weights from N(0, 0.02).
LEAKY_SLOPE = 0.2
DCGAN_INIT_STD = 0.02

Init = Literal["normal", "xavier", "orthogonal", "zeros"]


# -- checks ---------------------------------------------------------------------------------------


def _check_int(value: int, param: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}, got {value!r}; set {param} to at least {minimum}.")


def _check_choice(value: str, param: str, choices: tuple[str, ...]) -> None:
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
    if info.num_classes > 0 and info.cond_dim > 0:
        raise ValueError(
            f"{owner}: dataset{data} declares both num_classes={info.num_classes} and cond_dim={info.cond_dim}; "
            "a dataset has class labels or continuous conditions, not both."
        )
    return c, h, int(math.log2(h)) - 2


def _check_attention(value: Optional[int], valid: list[int], owner: str) -> None:
    if value is not None and value not in valid:
        raise ValueError(
            f"{owner}: attention_resolution={value!r} is not a feature-map resolution of this network; "
            f"expected one of {', '.join(map(str, valid))} or null (no self-attention)."
        )


def _check_aux(aux_classes: bool, info: DataInfo, owner: str) -> None:
    if aux_classes and info.num_classes <= 0:
        raise ValueError(
            f"{owner}: aux_classes=True needs class-labelled data, but info.num_classes={info.num_classes}. "
            "Set aux_classes to false, or use a dataset with class labels."
        )


def prepare_y(y: Optional[torch.Tensor], info: DataInfo, n: int, owner: str) -> Optional[torch.Tensor]:
    """Validate ``y`` against ``info``: class labels → ``long (N,)``, conditions → ``(N, cond_dim)``.

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
        what = f"{info.num_classes} classes" if info.num_classes > 0 else f"{info.cond_dim} conditions"
        raise ValueError(f"{owner} is conditional ({what}) and needs y; got y=None.")
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


def _check_input(t: torch.Tensor, shape: tuple[int, ...], owner: str, what: str) -> None:
    if tuple(t.shape[1:]) != shape:
        expected = ", ".join(["N", *map(str, shape)])
        raise ValueError(f"{owner}: expected {what} of shape ({expected}), got {tuple(t.shape)}.")


# -- layers ---------------------------------------------------------------------------------------


def _layer(module: nn.Module, init: Init, sn: bool, gain: float = 1.0) -> nn.Module:
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


def _conv(cin: int, cout: int, k: int, init: Init, sn: bool, gain: float = 1.0, bias: bool = True) -> nn.Module:
    return _layer(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), init, sn, gain)


def _linear(cin: int, cout: int, init: Init, sn: bool, bias: bool = True) -> nn.Module:
    return _layer(nn.Linear(cin, cout, bias=bias), init, sn)


def _cond_features(info: DataInfo) -> int:
    """Length of the raw condition vector: one-hot classes or the continuous conditions."""
    return info.num_classes if info.num_classes > 0 else info.cond_dim


def condition_vector(y: torch.Tensor, info: DataInfo, dtype: torch.dtype) -> torch.Tensor:
    """One-hot class labels or the continuous conditions, as float ``(N, features)``.

    A bias-free linear map of a one-hot vector is a per-class lookup table, so the same layer
    implements categorical conditional BN (Miyato & Koyama 2018) and its continuous analogue.
    """
    if info.num_classes > 0:
        return F.one_hot(y, info.num_classes).to(dtype)
    return y.to(dtype)


class ConditionEmbedding(nn.Module):
    """``y`` → ``(N, dim)``: ``nn.Embedding`` for class labels, bias-free ``nn.Linear`` for conditions."""

    def __init__(self, info: DataInfo, dim: int, init: Init, sn: bool = False) -> None:
        super().__init__()
        self.classes = info.num_classes > 0
        table = nn.Embedding(info.num_classes, dim) if self.classes else nn.Linear(info.cond_dim, dim, bias=False)
        self.table = _layer(table, init, sn)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
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
        self.gain = _linear(cond_features, num_features, init, sn, bias=False)
        self.bias = _linear(cond_features, num_features, init, sn, bias=False)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        if c is None:
            raise ValueError("ConditionalBatchNorm needs a condition vector c; got None.")
        gain = 1.0 + self.gain(c)[:, :, None, None]
        return self.bn(x) * gain + self.bias(c)[:, :, None, None]


def _norm(num_features: int, cond_features: int, init: Init, cbn_init: Init, sn: bool) -> nn.Module:
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
        self.theta = _conv(channels, key, 1, init, sn, bias=False)
        self.phi = _conv(channels, key, 1, init, sn, bias=False)
        self.g = _conv(channels, value, 1, init, sn, bias=False)
        self.o = _conv(value, channels, 1, init, sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # (N, key, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (N, key, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (N, value, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (N, HW, HW/4)
        o = self.o((g @ beta.transpose(1, 2)).reshape(n, -1, h, w))
        return x + self.gamma * o


class DiscriminatorHead(nn.Module):
    """Features ``h (N, F)`` → logits ``(N,)`` [+ class logits].

    ``linear(h) + <embed(y), h>`` with projection (Miyato & Koyama 2018, eq. 3: the inner
    product with a class embedding replaces concatenating ``y``); for continuous conditions the
    embedding is linear, ``y^T V h``. ``aux_classes`` adds AC-GAN's classifier (Odena et al. 2017).
    """

    def __init__(self, features: int, info: DataInfo, project: bool, aux_classes: bool, init: Init, sn: bool) -> None:
        super().__init__()
        self.linear = _linear(features, 1, init, sn)
        self.embed = ConditionEmbedding(info, features, init, sn) if project else None
        self.aux = _linear(features, info.num_classes, init, sn) if aux_classes else None

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


class _ProjectingGenerator(nn.Module):
    """What the ``dcgan`` and ``resnet`` generators share: parameter checks, conditioning by an
    embedding concatenated to ``z`` (``concat``) or by conditional batch norm (``cbn``), and the
    start of ``forward`` up to the 4x4 projection."""

    def _setup(self, info: DataInfo, owner: str, latent_dim: int, width: int, embed_dim: int, conditioning: str,
               choices: tuple[str, ...], init: Init) -> tuple[int, int, int, int]:
        """Validate and build the conditioning; returns ``(channels, stages, cbn_features, input_dim)``."""
        c, h, stages = image_geometry(info, owner)
        _check_int(latent_dim, "latent_dim")
        _check_int(width, "width")
        _check_int(embed_dim, "embed_dim")
        _check_choice(conditioning, "conditioning", choices)
        self.info = info
        self.owner = owner
        self.latent_shape: tuple[int, ...] = (latent_dim,)
        self.sample_shape: tuple[int, ...] = (c, h, h)
        self.conditioning = conditioning if info.conditional else "none"
        # Concat: the conditional GAN of Mirza & Osindero 2014, an embedding of y joins z.
        self.embed = ConditionEmbedding(info, embed_dim, init) if self.conditioning == "concat" else None
        cbn = _cond_features(info) if self.conditioning == "cbn" else 0
        return c, stages, cbn, latent_dim + (embed_dim if self.embed is not None else 0)

    def _start(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The projected 4x4 feature map and the CBN condition vector (``None`` unless ``cbn``)."""
        _check_input(z, self.latent_shape, self.owner, "noise")
        n = z.shape[0]
        y = prepare_y(y, self.info, n, self.owner)
        cond = None
        if self.embed is not None:
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        elif self.conditioning == "cbn":
            cond = condition_vector(y, self.info, z.dtype)
        return self.project(z).reshape(n, self.chans[0], 4, 4), cond


# -- DCGAN ----------------------------------------------------------------------------------------


class DCGANGenerator(_ProjectingGenerator):
    """DCGAN generator (Radford et al. 2016, figure 1).

    ``z`` is projected and reshaped to ``(width * 2^(s-1), 4, 4)``; ``s = log2(H) - 2`` stride-2
    transposed convolutions (kernel 4, padding 1) double the resolution and halve the channels,
    each hidden layer followed by batch norm and ReLU; the last outputs ``C`` channels through tanh.

    Attributes:
        latent_shape: ``(latent_dim,)``.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: int = 100,
        width: int = 64,
        conditioning: str = "concat",
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        c, stages, cbn, in_dim = self._setup(info, "generator 'dcgan'", latent_dim, width, embed_dim, conditioning,
                                             ("concat", "cbn"), "normal")
        chans = [width * 2 ** (stages - 1 - j) for j in range(stages)]  # at 4, 8, ..., H/2
        self.chans = chans
        # Bias-free where batch norm follows: BN's shift makes a bias redundant.
        self.project = _linear(in_dim, chans[0] * 16, "normal", False, bias=False)
        self.norms = nn.ModuleList(_norm(ch, cbn, "normal", "zeros", False) for ch in chans)
        self.ups = nn.ModuleList(
            _layer(nn.ConvTranspose2d(chans[j], chans[j + 1], 4, 2, 1, bias=False), "normal", False)
            for j in range(stages - 1)
        )
        self.to_image = _layer(nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), "normal", False)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, cond = self._start(z, y)
        for j, norm in enumerate(self.norms):
            h = F.relu(norm(h, cond))
            if j < len(self.ups):
                h = self.ups[j](h)
        return torch.tanh(self.to_image(h))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2016).

    ``s = log2(H) - 2`` stride-2 convolutions (kernel 4, padding 1) with LeakyReLU(0.2) halve the
    resolution down to 4x4 and double the channels from ``width``; batch norm on all but the
    first (or spectral norm on every layer instead, Miyato et al. 2018); then a linear layer on
    the flattened 4x4 features gives the logit.
    """

    def __init__(
        self,
        info: DataInfo,
        width: int = 64,
        conditioning: str = "concat",
        spectral_norm: bool = False,
        aux_classes: bool = False,
    ) -> None:
        super().__init__()
        owner = "discriminator 'dcgan'"
        c, h, stages = image_geometry(info, owner)
        _check_int(width, "width")
        _check_choice(conditioning, "conditioning", ("concat", "projection", "none"))
        _check_aux(aux_classes, info, owner)
        self.info = info
        self.owner = owner
        self.sample_shape: tuple[int, ...] = (c, h, h)
        self.conditioning = conditioning if info.conditional else "none"
        self.ignores_y = info.conditional and conditioning == "none"
        sn = spectral_norm
        self.cond_map = ConditionMap(info, h, "normal") if self.conditioning == "concat" else None
        layers: list[nn.Module] = []
        cin = c + (1 if self.cond_map is not None else 0)
        for i in range(stages):
            cout = width * 2**i
            use_bn = i > 0 and not sn  # Radford et al.: no BN on D's input layer
            layers.append(_layer(nn.Conv2d(cin, cout, 4, 2, 1, bias=not use_bn), "normal", sn))
            if use_bn:
                layers.append(BatchNorm(cout, "normal"))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = DiscriminatorHead(cin * 16, info, self.conditioning == "projection", aux_classes, "normal", sn)

    def forward(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.sample_shape, self.owner, "images")
        # conditioning "none" on conditional data ignores y; unconditional data must not get one.
        y = None if self.ignores_y else prepare_y(y, self.info, x.shape[0], self.owner)
        if self.cond_map is not None:
            x = torch.cat([x, self.cond_map(y).to(x.dtype)], dim=1)
        return self.head(self.body(x).flatten(1), y)


# -- residual networks (SNGAN, BigGAN) ------------------------------------------------------------


class GBlock(nn.Module):
    """Residual up-block: (C)BN, ReLU, 2x nearest upsample, 3x3 conv, (C)BN, ReLU, 3x3 conv.

    Shortcut: upsample then 1x1 conv (Miyato et al. 2018, appendix; Brock et al. 2019, fig. 15).
    """

    def __init__(self, cin: int, cout: int, cond_features: int, init: Init, cbn_init: Init, sn: bool, gain: float):
        super().__init__()
        self.bn1 = _norm(cin, cond_features, init, cbn_init, sn)
        self.conv1 = _conv(cin, cout, 3, init, sn, gain)
        self.bn2 = _norm(cout, cond_features, init, cbn_init, sn)
        self.conv2 = _conv(cout, cout, 3, init, sn, gain)
        self.shortcut = _conv(cin, cout, 1, init, sn)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Residual down-block: [ReLU], 3x3 conv, ReLU, 3x3 conv, [2x average pool].

    The first block of D gets no pre-activation (its input is the image) and pools before its
    1x1 shortcut conv; the others convolve then pool (Miyato et al. 2018's "optimized" first
    block, kept by Brock et al. 2019). An identity shortcut where shapes do not change.
    """

    def __init__(self, cin: int, cout: int, down: bool, first: bool, init: Init, sn: bool, gain: float) -> None:
        super().__init__()
        self.down = down
        self.first = first
        self.conv1 = _conv(cin, cout, 3, init, sn, gain)
        self.conv2 = _conv(cout, cout, 3, init, sn, gain)
        self.shortcut = _conv(cin, cout, 1, init, sn) if (down or cin != cout) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(self._pool(x))
        return h + self._pool(self.shortcut(x))


def generator_channels(width: int, stages: int) -> list[int]:
    """Channels at resolutions 4, 8, ..., H: halving from ``width * 2^(s-1)`` down to ``width``.

    At 128x128 this is BigGAN's ``ch * [16, 8, 4, 2, 1, 1]`` (Brock et al. 2019, table 7, with the
    first block's 16 shifted by one resolution).
    """
    return [width * 2 ** max(stages - 1 - j, 0) for j in range(stages + 1)]


class SNGANGenerator(_ProjectingGenerator):
    """ResNet generator of SNGAN (Miyato et al. 2018, appendix B.4; Gulrajani et al. 2017).

    ``z`` → linear → ``(width * 2^(s-1), 4, 4)`` → ``s`` residual up-blocks → BN, ReLU, 3x3 conv,
    tanh. Conditional by categorical conditional BN in every block (``cbn``, as in the
    projection-discriminator paper, Miyato & Koyama 2018) or by an embedding of ``y``
    concatenated to ``z`` (``concat``).

    Attributes:
        latent_shape: ``(latent_dim,)``.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: int = 128,
        width: int = 64,
        conditioning: str = "cbn",
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        c, stages, cbn, in_dim = self._setup(info, "generator 'resnet'", latent_dim, width, embed_dim, conditioning,
                                             ("cbn", "concat"), "xavier")
        chans = generator_channels(width, stages)
        self.chans = chans
        relu_gain = math.sqrt(2.0)
        self.project = _linear(in_dim, chans[0] * 16, "xavier", False)
        self.blocks = nn.ModuleList(
            GBlock(chans[j], chans[j + 1], cbn, "xavier", "zeros", False, relu_gain) for j in range(stages)
        )
        self.out_bn = BatchNorm(chans[-1], "xavier")
        self.to_image = _conv(chans[-1], c, 3, "xavier", False)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, cond = self._start(z, y)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.to_image(F.relu(self.out_bn(h))))


def latent_chunks(latent_dim: int, parts: int) -> list[int]:
    """Split ``latent_dim`` into ``parts`` near-equal chunk sizes (the first ones one larger)."""
    base, extra = divmod(latent_dim, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class BigGANGenerator(nn.Module):
    """BigGAN generator at small scale (Brock et al. 2019, appendix B).

    Hierarchical latent: ``z`` is split into ``s + 1`` chunks; the first is projected to
    ``(width * 2^(s-1), 4, 4)``, each of the ``s`` residual up-blocks gets one more. A shared
    class embedding (a linear map for continuous conditions) is concatenated with the block's
    chunk and feeds both class-conditional BNs of that block (gains and biases are linear in it).
    Unconditional data: the chunk alone feeds the BNs. Spectral norm in G as in D (Zhang et al.
    2019), optional self-attention after the block that outputs ``attention_resolution``.

    Attributes:
        latent_shape: ``(latent_dim,)``.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: int = 128,
        width: int = 64,
        shared_dim: int = 128,
        attention_resolution: Optional[int] = None,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        owner = "generator 'biggan'"
        c, h, stages = image_geometry(info, owner)
        _check_int(latent_dim, "latent_dim")
        if latent_dim < stages + 1:
            raise ValueError(
                f"latent_dim must be >= {stages + 1} for {owner} at {h}x{h}, got {latent_dim}: z is split into one "
                f"chunk for the input layer and one per block ({stages} blocks). Raise latent_dim (default 128)."
            )
        _check_int(width, "width")
        _check_int(shared_dim, "shared_dim")
        _check_attention(attention_resolution, [8 * 2**j for j in range(stages)], owner)
        self.info = info
        self.owner = owner
        self.latent_shape: tuple[int, ...] = (latent_dim,)
        self.sample_shape: tuple[int, ...] = (c, h, h)
        sn = spectral_norm
        self.chunks = latent_chunks(latent_dim, stages + 1)
        chans = generator_channels(width, stages)
        self.chans = chans
        # BigGAN's shared embedding is a plain lookup table (no spectral norm).
        self.shared = ConditionEmbedding(info, shared_dim, "orthogonal") if info.conditional else None
        shared = shared_dim if self.shared is not None else 0
        self.project = _linear(self.chunks[0], chans[0] * 16, "orthogonal", sn)
        self.blocks = nn.ModuleList(
            GBlock(chans[j], chans[j + 1], shared + self.chunks[j + 1], "orthogonal", "orthogonal", sn, 1.0)
            for j in range(stages)
        )
        self.attention = nn.ModuleDict()
        if attention_resolution is not None:
            j = int(math.log2(attention_resolution)) - 3  # block j outputs 8 * 2^j
            self.attention[str(j)] = SelfAttention(chans[j + 1], "orthogonal", sn)
        self.out_bn = BatchNorm(chans[-1], "orthogonal")
        self.to_image = _conv(chans[-1], c, 3, "orthogonal", sn)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        _check_input(z, self.latent_shape, self.owner, "noise")
        n = z.shape[0]
        y = prepare_y(y, self.info, n, self.owner)
        zs = torch.split(z, self.chunks, dim=1)
        shared = self.shared(y).to(z.dtype) if self.shared is not None else None
        h = self.project(zs[0]).reshape(n, self.chans[0], 4, 4)
        for j, block in enumerate(self.blocks):
            cond = zs[j + 1] if shared is None else torch.cat([shared, zs[j + 1]], dim=1)
            h = block(h, cond)
            if str(j) in self.attention:
                h = self.attention[str(j)](h)
        return torch.tanh(self.to_image(F.relu(self.out_bn(h))))

    def regularized_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Weights under orthogonal regularization: every matrix or filter bank but the shared
        embedding (Brock et al. exclude it too)."""
        shared = {id(p) for p in self.shared.parameters()} if self.shared is not None else set()
        return [(name, p) for name, p in self.named_parameters() if p.ndim >= 2 and id(p) not in shared]


def orthogonal_penalty(weight: torch.Tensor) -> torch.Tensor:
    """``‖W Wᵀ ⊙ (1 − I)‖²_F`` with ``W`` the weight reshaped to ``(out, -1)``.

    Brock et al. 2019, eq. 3 (their ``WᵀW`` with filters as columns): only the inner products
    between *different* filters are penalized, so filter norms stay free, unlike Brock et al.
    2017's ``‖WᵀW − I‖²``.
    """
    w = weight.reshape(weight.shape[0], -1)
    gram = w @ w.transpose(0, 1)
    off_diagonal = gram * (1.0 - torch.eye(w.shape[0], dtype=w.dtype, device=w.device))
    return off_diagonal.square().sum()


class OrthogonalRegularizedBigGANGenerator(BigGANGenerator):
    """:class:`BigGANGenerator` exposing :meth:`regularization_loss` (``orthogonal_reg > 0``).

    The engine adds ``regularization_loss()`` to the generator loss when the method exists, so
    it exists only when the regularization is on.
    """

    def __init__(self, info: DataInfo, orthogonal_reg: float, **kwargs: object) -> None:
        super().__init__(info, **kwargs)  # type: ignore[arg-type]
        self.orthogonal_reg = float(orthogonal_reg)

    def regularization_loss(self) -> torch.Tensor:
        """``β Σ_W ‖WᵀW ⊙ (1 − I)‖²_F`` over :meth:`regularized_parameters` (β = ``orthogonal_reg``)."""
        total = sum(orthogonal_penalty(p) for _, p in self.regularized_parameters())
        return self.orthogonal_reg * total  # type: ignore[return-value]


def discriminator_channels(width: int, stages: int) -> list[int]:
    """Output channels of the ``s`` down-blocks: ``width * [1, 2, 4, 8, 16]`` (BigGAN, table 7)."""
    return [width * 2 ** min(i, 4) for i in range(stages)]


class ResidualDiscriminator(nn.Module):
    """ResNet discriminator of SNGAN (Miyato et al. 2018) and BigGAN (Brock et al. 2019).

    ``s = log2(H) - 2`` residual down-blocks to 4x4, one more block at 4x4, ReLU, global *sum*
    pooling (which lets D count features over the image, Miyato et al.), then a linear logit
    with projection conditioning by default. Spectral norm on every layer. Optional
    self-attention after the block that outputs ``attention_resolution``.
    """

    def __init__(
        self,
        info: DataInfo,
        owner: str,
        width: int,
        conditioning: str,
        spectral_norm: bool,
        aux_classes: bool,
        init: Init,
        attention_resolution: Optional[int] = None,
    ) -> None:
        super().__init__()
        c, h, stages = image_geometry(info, owner)
        _check_int(width, "width")
        _check_choice(conditioning, "conditioning", ("projection", "concat", "none"))
        _check_aux(aux_classes, info, owner)
        _check_attention(attention_resolution, [h // 2 ** (i + 1) for i in range(stages)], owner)
        self.info = info
        self.owner = owner
        self.sample_shape: tuple[int, ...] = (c, h, h)
        self.conditioning = conditioning if info.conditional else "none"
        self.ignores_y = info.conditional and conditioning == "none"
        sn = spectral_norm
        gain = math.sqrt(2.0) if init == "xavier" else 1.0
        self.cond_map = ConditionMap(info, h, init) if self.conditioning == "concat" else None
        cin = c + (1 if self.cond_map is not None else 0)
        blocks: list[nn.Module] = []
        for i, cout in enumerate(discriminator_channels(width, stages)):
            blocks.append(DBlock(cin, cout, True, i == 0, init, sn, gain))
            if attention_resolution == h // 2 ** (i + 1):
                blocks.append(SelfAttention(cout, init, sn))
            cin = cout
        blocks.append(DBlock(cin, cin, False, False, init, sn, gain))
        self.blocks = nn.Sequential(*blocks)
        self.head = DiscriminatorHead(cin, info, self.conditioning == "projection", aux_classes, init, sn)

    def forward(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.sample_shape, self.owner, "images")
        # conditioning "none" on conditional data ignores y; unconditional data must not get one.
        y = None if self.ignores_y else prepare_y(y, self.info, x.shape[0], self.owner)
        if self.cond_map is not None:
            x = torch.cat([x, self.cond_map(y).to(x.dtype)], dim=1)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.head(h, y)


# -- factories (their signatures are the config schema) -------------------------------------------


def dcgan_generator(
    info: DataInfo,
    latent_dim: int = 100,
    width: int = 64,
    conditioning: Literal["concat", "cbn"] = "concat",
    embed_dim: int = 32,
) -> DCGANGenerator:
    """DCGAN generator (Radford et al. 2016): project-and-reshape, stride-2 transposed convs, BN, ReLU, tanh.

    Args:
        info: The dataset's description (injected by the engine).
        latent_dim: Length of the noise vector (100 in the paper).
        width: Channels of the last hidden layer; each coarser layer has twice as many
            (``width * 2^(s-1)`` at 4x4). 64 gives 256-128-64 at 32x32.
        conditioning: Conditional data only. ``concat``: an embedding of ``y`` (``embed_dim``)
            joins ``z`` (Mirza & Osindero 2014). ``cbn``: conditional batch norm in every layer.
        embed_dim: Size of the embedding of ``y`` for ``concat``.
    """
    return DCGANGenerator(info, latent_dim, width, conditioning, embed_dim)


def dcgan_discriminator(
    info: DataInfo,
    width: int = 64,
    conditioning: Literal["concat", "projection", "none"] = "concat",
    spectral_norm: bool = False,
    aux_classes: bool = False,
) -> DCGANDiscriminator:
    """DCGAN discriminator (Radford et al. 2016): stride-2 convs, LeakyReLU(0.2), BN or spectral norm.

    Batch norm mixes the samples of a batch, so per-sample gradient penalties (WGAN-GP, R1) are
    not well defined through it: use ``spectral_norm: true`` (which replaces BN) with them.

    Args:
        info: The dataset's description (injected by the engine).
        width: Channels of the first layer; doubled at each stride-2 layer.
        conditioning: Conditional data only. ``concat``: a learned ``H``x``W`` map of ``y`` is
            concatenated to the image as an extra channel. ``projection``: ``logit += <embed(y),
            features>`` (Miyato & Koyama 2018). ``none``: ``y`` is ignored (e.g. AC-GAN, where
            the labels enter through ``aux_classes``).
        spectral_norm: Spectral norm on every layer instead of batch norm (Miyato et al. 2018).
        aux_classes: Also return class logits ``(N, num_classes)`` (AC-GAN, Odena et al. 2017).
    """
    return DCGANDiscriminator(info, width, conditioning, spectral_norm, aux_classes)


def resnet_generator(
    info: DataInfo,
    latent_dim: int = 128,
    width: int = 64,
    conditioning: Literal["cbn", "concat"] = "cbn",
    embed_dim: int = 32,
) -> SNGANGenerator:
    """SNGAN ResNet generator (Miyato et al. 2018): residual up-blocks with BN, ReLU, nearest upsampling.

    Xavier-uniform init (gain sqrt(2) on the residual 3x3 convolutions).

    Args:
        info: The dataset's description (injected by the engine).
        latent_dim: Length of the noise vector (128 in SNGAN).
        width: Channels at full resolution; doubled at each coarser one (``width * 2^(s-1)`` at
            4x4). 64 gives 256-128-64-64 at 32x32.
        conditioning: Conditional data only. ``cbn``: categorical conditional BN in every block
            (Miyato & Koyama 2018; linear in the conditions for continuous ``y``). ``concat``:
            an embedding of ``y`` joins ``z``.
        embed_dim: Size of the embedding of ``y`` for ``concat``.
    """
    return SNGANGenerator(info, latent_dim, width, conditioning, embed_dim)


def resnet_discriminator(
    info: DataInfo,
    width: int = 64,
    conditioning: Literal["projection", "concat", "none"] = "projection",
    spectral_norm: bool = True,
    aux_classes: bool = False,
) -> ResidualDiscriminator:
    """SNGAN ResNet discriminator (Miyato et al. 2018): spectral norm, residual down-blocks, sum pooling.

    Xavier-uniform init (gain sqrt(2) on the residual 3x3 convolutions).

    Args:
        info: The dataset's description (injected by the engine).
        width: Channels of the first block; doubled per down-block up to ``16 * width``.
        conditioning: Conditional data only. ``projection`` (Miyato & Koyama 2018), ``concat``
            (a learned map of ``y`` as an extra input channel) or ``none`` (``y`` ignored).
        spectral_norm: Spectral norm on every layer (Miyato et al. 2018).
        aux_classes: Also return class logits ``(N, num_classes)`` (AC-GAN, Odena et al. 2017).
    """
    return ResidualDiscriminator(info, "discriminator 'resnet'", width, conditioning, spectral_norm, aux_classes, "xavier")


def biggan_generator(
    info: DataInfo,
    latent_dim: int = 128,
    width: int = 64,
    shared_dim: int = 128,
    attention_resolution: Optional[int] = None,
    spectral_norm: bool = True,
    orthogonal_reg: float = 0.0,
) -> BigGANGenerator:
    """BigGAN generator at small scale (Brock et al. 2019): hierarchical z, shared embedding, conditional BN.

    BigGAN is trained with the hinge loss (``objective.name: hinge``), a separate objective
    plugin, and with the projection discriminator ``discriminator.name: biggan``. Orthogonal init.

    Args:
        info: The dataset's description (injected by the engine).
        latent_dim: Length of the noise vector, split into ``log2(H) - 1`` chunks (one for the
            input layer, one per block); at least that many.
        width: Channels at full resolution; doubled at each coarser one (``width * 2^(s-1)`` at 4x4).
        shared_dim: Size of the shared class embedding (a linear map for continuous conditions).
        attention_resolution: Resolution (8 … H) after which a self-attention block is inserted
            (Zhang et al. 2019); null for none. BigGAN uses 64 at 128x128.
        spectral_norm: Spectral norm on every layer of G (Zhang et al. 2019; Brock et al. 2019).
        orthogonal_reg: β of the modified orthogonal regularization ``β ‖WᵀW ⊙ (1 − I)‖²_F``
            (Brock et al. 2019, eq. 3; they use 1e-4). When > 0 the generator has a
            ``regularization_loss()`` method that the engine adds to the generator loss.
    """
    if not isinstance(orthogonal_reg, (int, float)) or isinstance(orthogonal_reg, bool) or orthogonal_reg < 0:
        raise ValueError(
            f"orthogonal_reg must be a number >= 0, got {orthogonal_reg!r}; "
            "use 0 to turn the regularization off (Brock et al. use 1e-4)."
        )
    kwargs = dict(
        latent_dim=latent_dim,
        width=width,
        shared_dim=shared_dim,
        attention_resolution=attention_resolution,
        spectral_norm=spectral_norm,
    )
    if orthogonal_reg > 0:
        return OrthogonalRegularizedBigGANGenerator(info, orthogonal_reg, **kwargs)
    return BigGANGenerator(info, **kwargs)  # type: ignore[arg-type]


def biggan_discriminator(
    info: DataInfo,
    width: int = 64,
    conditioning: Literal["projection", "none"] = "projection",
    attention_resolution: Optional[int] = None,
    spectral_norm: bool = True,
    aux_classes: bool = False,
) -> ResidualDiscriminator:
    """BigGAN discriminator at small scale (Brock et al. 2019): residual, spectral norm, projection.

    Meant for the hinge loss (``objective.name: hinge``). Orthogonal init.

    Args:
        info: The dataset's description (injected by the engine).
        width: Channels of the first block; doubled per down-block up to ``16 * width``.
        conditioning: Conditional data only. ``projection`` (Miyato & Koyama 2018) or ``none``.
        attention_resolution: Resolution (H/2 … 4) after which a self-attention block is
            inserted (Zhang et al. 2019); null for none. BigGAN uses 64 at 128x128.
        spectral_norm: Spectral norm on every layer.
        aux_classes: Also return class logits ``(N, num_classes)`` (AC-GAN, Odena et al. 2017).
    """
    _check_choice(conditioning, "conditioning", ("projection", "none"))
    return ResidualDiscriminator(
        info, "discriminator 'biggan'", width, conditioning, spectral_norm, aux_classes, "orthogonal", attention_resolution
    )


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register("dcgan", dcgan_generator, description="DCGAN generator (Radford et al. 2016) for square images, 8-128 px.")
    register("resnet", resnet_generator, description="SNGAN ResNet generator (Miyato et al. 2018), 8-128 px.")
    register("biggan", biggan_generator, description="Small-scale BigGAN generator (Brock et al. 2019), 8-128 px.")


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register("dcgan", dcgan_discriminator, description="DCGAN discriminator (Radford et al. 2016), BN or spectral norm.")
    register("resnet", resnet_discriminator, description="SNGAN ResNet discriminator with projection (Miyato et al. 2018).")
    register("biggan", biggan_discriminator, description="Small-scale BigGAN projection discriminator (Brock et al. 2019).")
