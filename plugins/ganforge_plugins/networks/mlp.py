"""Fully connected generator and discriminator (``generator.name: mlp``, ``discriminator.name: mlp``).

The defaults suit the lecture's ring of 8 Gaussians (2-D points, 2-D noise as in PacGAN), but
both networks work for any sample shape: the generator's output is reshaped to
``info.sample_shape`` and the discriminator flattens its input, so an MLP is also a quick
baseline on small images.

Conditioning follows the dataset's :class:`ganforge.DataInfo`: class labels
(``info.num_classes > 0``) go through a learned embedding, continuous conditions
(``info.cond_dim > 0``) are used as they are; either (or both, the class embedding first) is
concatenated to the network's input.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ganforge import DataInfo, Register, hookimpl
from ganforge_plugins.networks.layers import prepare_y
from ganforge_plugins.networks.pacgan import pacgan_discriminator

Activation = Literal["relu", "leaky-relu", "tanh", "elu"]
OutputActivation = Literal["auto", "linear", "tanh"]

# The slope most GAN discriminators use; a smaller one makes D's gradient vanish for
# samples on the wrong side of many units.
LEAKY_SLOPE = 0.2

_ACTIVATIONS = ("relu", "leaky-relu", "tanh", "elu")


def _check_activation(name: str, param: str) -> None:
    if name not in _ACTIVATIONS:
        raise ValueError(f"{param}: unknown activation {name!r}; expected one of {', '.join(map(repr, _ACTIVATIONS))}.")


def _make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky-relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "tanh":
        return nn.Tanh()
    return nn.ELU()


def _gain(name: str) -> float:
    """Init gain that keeps activations' scale through the hidden layers."""
    if name == "leaky-relu":
        return nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
    if name == "tanh":
        return nn.init.calculate_gain("tanh")
    # ELU has no entry in calculate_gain; it acts like ReLU on the positive half, which carries
    # most of the signal, so ReLU's gain is the closer choice.
    return nn.init.calculate_gain("relu")


def _check_positive(value: int, param: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}, got {value!r}.")


def build_mlp(
    in_features: int,
    out_features: int,
    width: int,
    depth: int,
    activation: str,
    spectral_norm: bool,
) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear output layer.

    Weights get orthogonal init (the Unrolled-GAN demo's choice for the ring): unlike i.i.d.
    Gaussian init it keeps every direction of a 2-D input alive through the layers, which
    matters when a 2-D latent has to be spread over 8 separated modes. Biases start at zero.
    """
    layers: list[nn.Module] = []
    fan_in = in_features
    for _ in range(depth):
        lin = nn.Linear(fan_in, width)
        nn.init.orthogonal_(lin.weight, gain=_gain(activation))
        nn.init.zeros_(lin.bias)
        layers += [_spectral_norm(lin) if spectral_norm else lin, _make_activation(activation)]
        fan_in = width
    out = nn.Linear(fan_in, out_features)
    nn.init.orthogonal_(out.weight, gain=1.0)
    nn.init.zeros_(out.bias)
    layers.append(_spectral_norm(out) if spectral_norm else out)
    return nn.Sequential(*layers)


class Conditioning(nn.Module):
    """Turns ``y`` into a vector to concatenate to a network's input.

    Class labels (``info.num_classes > 0``) are embedded with a learned ``nn.Embedding``;
    continuous conditions (``info.cond_dim > 0``) pass through as float vectors; with both,
    ``y`` is float ``(N, 1 + cond_dim)`` (:meth:`ganforge.DataInfo.split_conditions`) and the output is
    the class embedding followed by the conditions. For unconditional data ``out_features`` is 0
    and ``y`` must be ``None``.
    """

    def __init__(self, info: DataInfo, embed_dim: int, owner: str) -> None:
        super().__init__()
        self.owner = owner
        self.info = info
        self.num_classes = int(info.num_classes)
        self.cond_dim = int(info.cond_dim)
        self.embed: Optional[nn.Embedding] = None
        if self.num_classes > 0:
            _check_positive(embed_dim, "embed_dim")
            self.embed = nn.Embedding(self.num_classes, embed_dim)
            self.out_features = embed_dim + self.cond_dim
        else:
            self.out_features = self.cond_dim

    def forward(self, y: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
        if self.out_features == 0:
            if y is not None:
                raise ValueError(
                    f"{self.owner} is unconditional (the dataset has no labels or conditions) but got y "
                    f"of shape {tuple(y.shape)}; pass y=None."
                )
            return None
        if y is None:
            what = " and ".join(([f"{self.num_classes} classes"] if self.num_classes > 0 else [])
                                + ([f"{self.cond_dim} conditions"] if self.cond_dim > 0 else []))
            raise ValueError(f"{self.owner} is conditional ({what}) and needs y; got y=None.")
        if self.embed is not None and self.cond_dim > 0:  # the image networks' check of the (N, 1 + cond_dim) layout
            labels, conds = self.info.split_conditions(prepare_y(y, self.info, n, self.owner), check=False)
            return torch.cat([self.embed(labels), conds.float()], dim=1)
        if self.embed is not None:
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise TypeError(
                    f"{self.owner}: class labels y must be an integer tensor of class indices, got dtype {y.dtype}."
                )
            if y.numel() != n:
                raise ValueError(f"{self.owner}: expected {n} class labels (one per sample), got y of shape {tuple(y.shape)}.")
            # No range check here: it would synchronize with the GPU on every step.
            return self.embed(y.reshape(n).long())
        if y.numel() != n * self.cond_dim:
            raise ValueError(
                f"{self.owner}: expected conditions of shape ({n}, {self.cond_dim}), got y of shape {tuple(y.shape)}."
            )
        return y.reshape(n, self.cond_dim).float()


class MLPGenerator(nn.Module):
    """Noise ``(N, latent_dim)`` (and conditions) → samples ``(N, *info.sample_shape)``.

    Attributes:
        latent_shape: ``(latent_dim,)``, the shape of one noise vector.
        sample_shape: The dataset's sample shape.
    """

    def __init__(
        self,
        info: DataInfo,
        latent_dim: int = 2,
        width: int = 128,
        depth: int = 2,
        activation: str = "relu",
        spectral_norm: bool = False,
        embed_dim: int = 16,
        output: str = "auto",
    ) -> None:
        super().__init__()
        _check_positive(latent_dim, "latent_dim")
        _check_positive(width, "width")
        _check_positive(depth, "depth")
        _check_activation(activation, "activation")
        if output not in ("auto", "linear", "tanh"):
            raise ValueError(f"output: unknown output activation {output!r}; expected 'auto', 'linear' or 'tanh'.")
        self.latent_shape: tuple[int, ...] = (latent_dim,)
        self.sample_shape: tuple[int, ...] = tuple(int(s) for s in info.sample_shape)
        self.cond = Conditioning(info, embed_dim, "generator 'mlp'")
        self.net = build_mlp(
            latent_dim + self.cond.out_features, math.prod(self.sample_shape), width, depth, activation, spectral_norm
        )
        if output == "auto":
            # tanh only where the data is known to fill [-1, 1] (normalized images); points keep a
            # linear output so the generator can reach modes anywhere in the plane.
            output = "tanh" if info.kind == "image" and tuple(info.value_range) == (-1.0, 1.0) else "linear"
        self.output = output
        self.out_act: nn.Module = nn.Tanh() if output == "tanh" else nn.Identity()

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = z.shape[0]
        h = z.reshape(n, -1)
        if h.shape[1] != self.latent_shape[0]:
            raise ValueError(
                f"generator 'mlp': expected noise of shape (N, {self.latent_shape[0]}), got {tuple(z.shape)}."
            )
        c = self.cond(y, n)
        if c is not None:
            h = torch.cat([h, c.to(h.dtype)], dim=1)
        return self.out_act(self.net(h)).reshape(n, *self.sample_shape)


class MLPDiscriminator(nn.Module):
    """Samples ``(N, *info.sample_shape)`` (and conditions) → logits ``(N,)``."""

    def __init__(
        self,
        info: DataInfo,
        width: int = 128,
        depth: int = 2,
        activation: str = "leaky-relu",
        spectral_norm: bool = False,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        _check_positive(width, "width")
        _check_positive(depth, "depth")
        _check_activation(activation, "activation")
        self.sample_shape: tuple[int, ...] = tuple(int(s) for s in info.sample_shape)
        self.in_features = math.prod(self.sample_shape)
        self.cond = Conditioning(info, embed_dim, "discriminator 'mlp'")
        self.net = build_mlp(self.in_features + self.cond.out_features, 1, width, depth, activation, spectral_norm)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = x.shape[0]
        h = x.reshape(n, -1)
        if h.shape[1] != self.in_features:
            raise ValueError(
                f"discriminator 'mlp': expected samples of shape (N, {', '.join(map(str, self.sample_shape))}), "
                f"got {tuple(x.shape)}."
            )
        c = self.cond(y, n)
        if c is not None:
            h = torch.cat([h, c.to(h.dtype)], dim=1)
        return self.net(h).reshape(n)


def mlp_generator(
    info: DataInfo,
    latent_dim: int = 2,
    width: int = 128,
    depth: int = 2,
    activation: Activation = "relu",
    spectral_norm: bool = False,
    embed_dim: int = 16,
    output: OutputActivation = "auto",
) -> MLPGenerator:
    """Fully connected generator; output reshaped to the dataset's sample shape.

    Args:
        info: The dataset's description (injected by the engine).
        latent_dim: Length of the noise vector (PacGAN's ring protocol uses 2).
        width: Units per hidden layer.
        depth: Number of hidden layers.
        activation: Hidden-layer non-linearity.
        spectral_norm: Spectrally normalize every linear layer.
        embed_dim: Size of the learned class embedding (class-labelled data only).
        output: Output non-linearity; ``auto`` is ``tanh`` for images normalized to [-1, 1] and
            linear otherwise.
    """
    return MLPGenerator(info, latent_dim, width, depth, activation, spectral_norm, embed_dim, output)


def mlp_discriminator(
    info: DataInfo,
    width: int = 128,
    depth: int = 2,
    activation: Activation = "leaky-relu",
    spectral_norm: bool = False,
    embed_dim: int = 16,
) -> MLPDiscriminator:
    """Fully connected discriminator returning one logit per sample.

    Args:
        info: The dataset's description (injected by the engine).
        width: Units per hidden layer.
        depth: Number of hidden layers.
        activation: Hidden-layer non-linearity (leaky ReLU keeps gradients alive for D's inputs
            far from the data).
        spectral_norm: Spectrally normalize every linear layer (SN-GAN).
        embed_dim: Size of the learned class embedding (class-labelled data only).
    """
    return MLPDiscriminator(info, width, depth, activation, spectral_norm, embed_dim)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_generators(register: Register) -> None:
    register("mlp", mlp_generator, description="Fully connected generator for points (or any sample shape).")


@hookimpl
def ganforge_register_discriminators(register: Register) -> None:
    register("mlp", mlp_discriminator, description="Fully connected discriminator for points (or any sample shape).")
    # PacGAN wraps any registered discriminator; it lives with the generic networks (it needs no image
    # layer, and Lin et al.'s first experiments pack MLPs on 2-D mixtures), its base comes from the registry.
    register("pacgan", pacgan_discriminator,
             description="PacGAN (Lin et al. 2018): any discriminator deciding on packs of m samples.")
