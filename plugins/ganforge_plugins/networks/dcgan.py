"""DCGAN generator and discriminator (Radford et al. 2016) for square images, 8-128 px."""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import DataInfo
from ganforge_plugins.networks.layers import (
    LEAKY_SLOPE,
    BatchNorm,
    MinibatchStd,
    ConditionMap,
    DiscriminatorHead,
    ProjectingGenerator,
    check_aux,
    check_choice,
    check_input,
    check_int,
    check_minibatch_std,
    image_geometry,
    init_layer,
    linear,
    make_norm,
    prepare_y,
)


class DCGANGenerator(ProjectingGenerator):
    """DCGAN generator (Radford et al. 2016, figure 1).

    ``z`` is projected and reshaped to ``(width * 2^(s-1), 4, 4)``; ``s = log2(H) - 2`` stride-2
    transposed convolutions (kernel 4, padding 1) double the resolution and halve the channels,
    each hidden layer followed by batch norm and ReLU; the last outputs ``C`` channels through tanh.
    With ``coords``, two channels holding each position's x and y in [-1, 1] join the input of every
    transposed convolution (CoordConv, Liu et al. 2018), so a layer can draw something that depends
    on where in the image it is (e.g. an ellipse pointing at the image centre).

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
        coords: bool = False,
    ) -> None:
        super().__init__()
        c, stages, cbn, in_dim = self._setup(info, "generator 'dcgan'", latent_dim, width, embed_dim, conditioning,
                                             ("concat", "cbn"), "normal")
        if not isinstance(coords, bool):
            raise ValueError(f"generator 'dcgan': coords={coords!r}; expected true or false")
        chans = [width * 2 ** (stages - 1 - j) for j in range(stages)]  # at 4, 8, ..., H/2
        self.chans = chans
        self.coords = coords
        extra = 2 if coords else 0
        # Bias-free where batch norm follows: BN's shift makes a bias redundant.
        self.project = linear(in_dim, chans[0] * 16, "normal", False, bias=False)
        self.norms = nn.ModuleList(make_norm(ch, cbn, "normal", "zeros", False) for ch in chans)
        self.ups = nn.ModuleList(
            init_layer(nn.ConvTranspose2d(chans[j] + extra, chans[j + 1], 4, 2, 1, bias=False), "normal", False)
            for j in range(stages - 1)
        )
        self.to_image = init_layer(nn.ConvTranspose2d(chans[-1] + extra, c, 4, 2, 1), "normal", False)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, cond = self._start(z, y)
        for j, norm in enumerate(self.norms):
            h = F.relu(norm(h, cond))
            if self.coords:
                h = torch.cat([h, coordinate_channels(h)], dim=1)
            h = self.ups[j](h) if j < len(self.ups) else self.to_image(h)
        return torch.tanh(h)


def coordinate_channels(h: torch.Tensor) -> torch.Tensor:
    """``(N, 2, H, W)``: each position's x (channel 0) and y (channel 1), from -1 to 1, in ``h``'s dtype and device."""
    n, _, height, width = h.shape
    ys = torch.linspace(-1.0, 1.0, height, dtype=h.dtype, device=h.device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=h.dtype, device=h.device)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W): x varies along W, y along H
    return grid.unsqueeze(0).expand(n, -1, -1, -1)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2016).

    ``s = log2(H) - 2`` stride-2 convolutions (kernel 4, padding 1) with LeakyReLU(0.2) halve the
    resolution down to 4x4 and double the channels from ``width``; batch norm on all but the
    first (or spectral norm on every layer instead, Miyato et al. 2018); then a linear layer on
    the flattened 4x4 features gives the logit. With ``minibatch_std`` a :class:`MinibatchStd`
    feature map joins the input of the last convolution.

    Attributes:
        batch_multiple: The batch the discriminator gets must be a multiple of this
            (``minibatch_std``'s group, else 1); the engine checks ``train.batch_size`` against it.
    """

    def __init__(
        self,
        info: DataInfo,
        width: int = 64,
        conditioning: str = "concat",
        spectral_norm: bool = False,
        aux_classes: bool = False,
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        owner = "discriminator 'dcgan'"
        c, h, stages = image_geometry(info, owner)
        check_int(width, "width")
        check_minibatch_std(minibatch_std, owner)
        self.batch_multiple = max(minibatch_std, 1)
        check_choice(conditioning, "conditioning", ("concat", "projection", "none"))
        check_aux(aux_classes, info, owner)
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
            if minibatch_std and i == stages - 1:  # "towards the end" (Karras et al. 2018, section 3)
                layers.append(MinibatchStd(minibatch_std, owner))
                cin += 1
            layers.append(init_layer(nn.Conv2d(cin, cout, 4, 2, 1, bias=not use_bn), "normal", sn))
            if use_bn:
                layers.append(BatchNorm(cout, "normal"))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = DiscriminatorHead(cin * 16, info, self.conditioning == "projection", aux_classes, "normal", sn)

    def forward(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.sample_shape, self.owner, "images")
        # conditioning "none" on conditional data ignores y; unconditional data must not get one.
        y = None if self.ignores_y else prepare_y(y, self.info, x.shape[0], self.owner)
        if self.cond_map is not None:
            x = torch.cat([x, self.cond_map(y).to(x.dtype)], dim=1)
        return self.head(self.body(x).flatten(1), y)


# -- factories (their signatures are the config schema) -------------------------------------------


def dcgan_generator(
    info: DataInfo,
    latent_dim: int = 100,
    width: int = 64,
    conditioning: Literal["concat", "cbn"] = "concat",
    embed_dim: int = 32,
    coords: bool = False,
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
        coords: Give every transposed convolution two extra input channels with the x and y of each
            position, from -1 to 1 (CoordConv, Liu et al. 2018): for images whose content depends on
            where it is, such as telescope images pointing at the camera centre.
    """
    return DCGANGenerator(info, latent_dim, width, conditioning, embed_dim, coords)


def dcgan_discriminator(
    info: DataInfo,
    width: int = 64,
    conditioning: Literal["concat", "projection", "none"] = "concat",
    spectral_norm: bool = False,
    aux_classes: bool = False,
    minibatch_std: int = 0,
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
        minibatch_std: Group size of the minibatch standard deviation feature (Karras et al. 2018,
            section 3) added before the last convolution; 0 turns it off, StyleGAN uses 4. It
            must divide the batch per device and discriminator step.
    """
    return DCGANDiscriminator(info, width, conditioning, spectral_norm, aux_classes, minibatch_std)
