"""SNGAN ResNet generator and discriminator (Miyato et al. 2018), and the residual blocks BigGAN shares."""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import DataInfo
from ganforge_plugins.networks.layers import (
    BatchNorm,
    ConditionMap,
    DiscriminatorHead,
    Init,
    MinibatchStd,
    ProjectingGenerator,
    SelfAttention,
    check_attention,
    check_aux,
    check_choice,
    check_input,
    check_int,
    check_minibatch_std,
    conv,
    image_geometry,
    linear,
    make_norm,
    prepare_y,
)


class GBlock(nn.Module):
    """Residual up-block: (C)BN, ReLU, 2x nearest upsample, 3x3 conv, (C)BN, ReLU, 3x3 conv.

    Shortcut: upsample then 1x1 conv (Miyato et al. 2018, appendix; Brock et al. 2019, fig. 15).
    """

    def __init__(self, cin: int, cout: int, cond_features: int, init: Init, cbn_init: Init, sn: bool, gain: float):
        super().__init__()
        self.bn1 = make_norm(cin, cond_features, init, cbn_init, sn)
        self.conv1 = conv(cin, cout, 3, init, sn, gain)
        self.bn2 = make_norm(cout, cond_features, init, cbn_init, sn)
        self.conv2 = conv(cout, cout, 3, init, sn, gain)
        self.shortcut = conv(cin, cout, 1, init, sn)

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
        self.conv1 = conv(cin, cout, 3, init, sn, gain)
        self.conv2 = conv(cout, cout, 3, init, sn, gain)
        self.shortcut = conv(cin, cout, 1, init, sn) if (down or cin != cout) else None

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


class SNGANGenerator(ProjectingGenerator):
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
        self.project = linear(in_dim, chans[0] * 16, "xavier", False)
        self.blocks = nn.ModuleList(
            GBlock(chans[j], chans[j + 1], cbn, "xavier", "zeros", False, relu_gain) for j in range(stages)
        )
        self.out_bn = BatchNorm(chans[-1], "xavier")
        self.to_image = conv(chans[-1], c, 3, "xavier", False)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, cond = self._start(z, y)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.to_image(F.relu(self.out_bn(h))))


def discriminator_channels(width: int, stages: int) -> list[int]:
    """Output channels of the ``s`` down-blocks: ``width * [1, 2, 4, 8, 16]`` (BigGAN, table 7)."""
    return [width * 2 ** min(i, 4) for i in range(stages)]


class ResidualDiscriminator(nn.Module):
    """ResNet discriminator of SNGAN (Miyato et al. 2018) and BigGAN (Brock et al. 2019).

    ``s = log2(H) - 2`` residual down-blocks to 4x4, one more block at 4x4, ReLU, global *sum*
    pooling (which lets D count features over the image, Miyato et al.), then a linear logit
    with projection conditioning by default. Spectral norm on every layer. Optional
    self-attention after the block that outputs ``attention_resolution``; optional
    :class:`MinibatchStd` feature map into the last block (``minibatch_std``, its group size, is
    then also ``batch_multiple``: the batch must be a multiple of it).
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
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        c, h, stages = image_geometry(info, owner)
        check_int(width, "width")
        check_minibatch_std(minibatch_std, owner)
        self.batch_multiple = max(minibatch_std, 1)
        check_choice(conditioning, "conditioning", ("projection", "concat", "none"))
        check_aux(aux_classes, info, owner)
        check_attention(attention_resolution, [h // 2 ** (i + 1) for i in range(stages)], owner)
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
        if minibatch_std:  # before the last block, at 4x4 (Karras et al. 2018, section 3)
            blocks.append(MinibatchStd(minibatch_std, owner))
        blocks.append(DBlock(cin + (1 if minibatch_std else 0), cin, False, False, init, sn, gain))
        self.blocks = nn.Sequential(*blocks)
        self.head = DiscriminatorHead(cin, info, self.conditioning == "projection", aux_classes, init, sn)

    def forward(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.sample_shape, self.owner, "images")
        # conditioning "none" on conditional data ignores y; unconditional data must not get one.
        y = None if self.ignores_y else prepare_y(y, self.info, x.shape[0], self.owner)
        if self.cond_map is not None:
            x = torch.cat([x, self.cond_map(y).to(x.dtype)], dim=1)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.head(h, y)


# -- factories (their signatures are the config schema) -------------------------------------------


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
    minibatch_std: int = 0,
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
        minibatch_std: Group size of the minibatch standard deviation feature (Karras et al. 2018,
            section 3) added before the last block; 0 turns it off, StyleGAN uses 4. It must divide
            the batch per device and discriminator step.
    """
    return ResidualDiscriminator(info, "discriminator 'resnet'", width, conditioning, spectral_norm, aux_classes, "xavier",
                                 minibatch_std=minibatch_std)
