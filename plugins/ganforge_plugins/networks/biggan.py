"""Small-scale BigGAN generator and discriminator (Brock et al. 2019), with orthogonal regularization."""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import DataInfo
from ganforge_plugins.networks.layers import (
    BatchNorm,
    ConditionEmbedding,
    SelfAttention,
    check_attention,
    check_choice,
    check_input,
    check_int,
    conv,
    image_geometry,
    linear,
    prepare_y,
)
from ganforge_plugins.networks.resnet import GBlock, ResidualDiscriminator, generator_channels


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
        check_int(latent_dim, "latent_dim")
        if latent_dim < stages + 1:
            raise ValueError(
                f"latent_dim must be >= {stages + 1} for {owner} at {h}x{h}, got {latent_dim}: z is split into one "
                f"chunk for the input layer and one per block ({stages} blocks). Raise latent_dim (default 128)."
            )
        check_int(width, "width")
        check_int(shared_dim, "shared_dim")
        check_attention(attention_resolution, [8 * 2**j for j in range(stages)], owner)
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
        self.project = linear(self.chunks[0], chans[0] * 16, "orthogonal", sn)
        self.blocks = nn.ModuleList(
            GBlock(chans[j], chans[j + 1], shared + self.chunks[j + 1], "orthogonal", "orthogonal", sn, 1.0)
            for j in range(stages)
        )
        self.attention = nn.ModuleDict()
        if attention_resolution is not None:
            j = int(math.log2(attention_resolution)) - 3  # block j outputs 8 * 2^j
            self.attention[str(j)] = SelfAttention(chans[j + 1], "orthogonal", sn)
        self.out_bn = BatchNorm(chans[-1], "orthogonal")
        self.to_image = conv(chans[-1], c, 3, "orthogonal", sn)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_input(z, self.latent_shape, self.owner, "noise")
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


# -- factories (their signatures are the config schema) -------------------------------------------


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
    minibatch_std: int = 0,
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
        minibatch_std: Group size of the minibatch standard deviation feature (Karras et al. 2018,
            section 3) added before the last block; 0 turns it off, StyleGAN uses 4. It must divide
            the batch per device and discriminator step.
    """
    check_choice(conditioning, "conditioning", ("projection", "none"))
    return ResidualDiscriminator(
        info, "discriminator 'biggan'", width, conditioning, spectral_norm, aux_classes, "orthogonal", attention_resolution,
        minibatch_std,
    )
