"""PacGAN (Lin et al. 2018, arXiv 1712.04086): any discriminator, deciding on packs of ``m`` samples.

``discriminator: {name: pacgan, base: mlp, pack: 2}`` builds the ``base`` discriminator for a
*packed* sample and feeds it ``m`` samples at once; the objective sees one logit per pack. A pack
of real samples is told apart from a pack of generated ones by their joint distribution, which
punishes a generator that lacks diversity (Lin et al., section 3: packing turns mode collapse
into a larger total-variation distance between the packed distributions).

Packing (Lin et al., section 2: "concatenate m samples"):

* samples ``i*m ... i*m + m - 1`` of the batch form pack ``i``, concatenated along the first
  non-batch axis: points ``(N, d)`` become ``(N/m, m*d)``, images ``(N, C, H, W)`` become
  ``(N/m, m*C, H, W)`` (the samples stacked as channels, as in the paper's PacDCGAN);
* conditions travel with their samples, in the same order: class labels become the one-hot
  vectors of the ``m`` samples concatenated (continuous conditions of length ``m*num_classes``),
  continuous conditions are concatenated (length ``m*cond_dim``); with both, each sample
  contributes its one-hot class followed by its conditions (length ``m*(num_classes + cond_dim)``).
  The base discriminator is built
  for that continuous condition vector, so every conditional base works unchanged.

Penalties on D's input gradient (R1, WGAN-GP) take per-sample norms of the gradient of the
*pack's* logit: the R1 term is the packed discriminator's R1 divided by ``m`` (the squared norms
of a pack's rows add up to the pack's), and WGAN-GP drives each sample's share of the gradient to
norm 1 (the pack's to ``sqrt(m)``). See docs/networks.md.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import ComponentRef, DataInfo, GroupingDiscriminator, build_component

OWNER = "discriminator 'pacgan'"


def packed_info(info: DataInfo, pack: int) -> DataInfo:
    """The :class:`DataInfo` of one pack of ``pack`` samples: what the base discriminator is built for.

    The first sample axis grows ``pack``-fold; class labels become ``pack`` concatenated one-hot
    vectors (continuous conditions), continuous conditions are concatenated, and with both each
    sample's one-hot class is followed by its conditions; mixture modes (which describe single
    samples) are dropped.
    """
    shape = tuple(int(s) for s in info.sample_shape)
    if not shape:
        raise ValueError(f"{OWNER}: dataset '{info.name}' has scalar samples (sample_shape=()); packing needs "
                         "samples with at least one axis, e.g. shape (1,).")
    cond = pack * (info.num_classes + info.cond_dim)
    denorm = None
    if info.denormalize is not None:  # per-channel (per-feature) lists repeat for every packed sample
        denorm = {k: list(v) * (pack if len(v) > 1 else 1) for k, v in info.denormalize.items()}
    return dataclasses.replace(
        info,
        sample_shape=(shape[0] * pack, *shape[1:]),
        num_classes=0,
        cond_dim=cond,
        modes=None,
        mode_std=None,
        protocol={**info.protocol, "pacgan_pack": pack},
        denormalize=denorm,
    )


class PackedDiscriminator(nn.Module):
    """Wraps a discriminator built for packs: ``forward(x (N, ...), y) -> logits (N/m,)``.

    Attributes:
        inner: The base discriminator, built for :func:`packed_info`.
        pack: ``m``, samples per decision.
        batch_multiple: ``m`` times the base's own (e.g. its minibatch-std group over packs): the
            batch must be a multiple of it; the engine checks ``train.batch_size`` at start-up.
    """

    def __init__(self, inner: nn.Module, info: DataInfo, pack: int) -> None:
        super().__init__()
        self.inner = inner
        self.info = info
        self.pack = pack
        self.sample_shape = tuple(int(s) for s in info.sample_shape)
        inner_multiple = int(inner.batch_multiple) if isinstance(inner, GroupingDiscriminator) else 1
        self.batch_multiple = pack * inner_multiple

    def pack_samples(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, S0, S1, ...)`` → ``(N/m, m*S0, S1, ...)``: consecutive samples side by side on axis 1."""
        n = x.shape[0]
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"{OWNER}: expected samples of shape (N, {', '.join(map(str, self.sample_shape))}), "
                             f"got {tuple(x.shape)}.")
        if n % self.pack:
            raise ValueError(
                f"{OWNER}: pack={self.pack} must divide the batch the discriminator gets, got {n} samples; set "
                f"train.batch_size to a multiple of {self.pack} x the number of processes, or change discriminator.pack."
            )
        return x.reshape(n // self.pack, self.pack * self.sample_shape[0], *self.sample_shape[1:])

    def pack_conditions(self, y: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
        """Each pack's conditions, in the order of its samples: ``(N/m, m * K)`` one-hot class
        labels (``K`` classes), ``(N/m, m * cond_dim)`` continuous conditions, or with both
        ``(N/m, m * (K + cond_dim))``, each sample's one-hot class followed by its conditions."""
        info = self.info
        if not info.conditional:
            if y is not None:
                raise ValueError(f"{OWNER} is unconditional (the dataset has no labels or conditions) but got y of "
                                 f"shape {tuple(y.shape)}; pass y=None.")
            return None
        if y is None:
            raise ValueError(f"{OWNER} is conditional and needs y; got y=None.")
        if info.num_classes > 0 and info.cond_dim > 0:
            width = 1 + info.cond_dim
            if not y.is_floating_point() or y.numel() != n * width:
                raise ValueError(f"{OWNER}: expected y of shape ({n}, {width}) (column 0 the class index, then "
                                 f"{info.cond_dim} conditions), got dtype {y.dtype} and shape {tuple(y.shape)}.")
            labels, conds = info.split_conditions(y.reshape(n, width), check=False)
            rows = torch.cat([F.one_hot(labels, info.num_classes).to(conds.dtype), conds], dim=1)
        elif info.num_classes > 0:
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.numel() != n:
                raise ValueError(f"{OWNER}: expected {n} integer class labels, got y of dtype {y.dtype} and shape "
                                 f"{tuple(y.shape)}.")
            # No range check (a GPU sync per step); one_hot raises on an out-of-range label anyway.
            rows = F.one_hot(y.reshape(n).long(), info.num_classes).float()
        else:
            if y.numel() != n * info.cond_dim:
                raise ValueError(f"{OWNER}: expected conditions of shape ({n}, {info.cond_dim}), got y of shape "
                                 f"{tuple(y.shape)}.")
            rows = y.reshape(n, info.cond_dim)
        return rows.reshape(n // self.pack, -1)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Any:
        packed = self.pack_samples(x)
        return self.inner(packed, self.pack_conditions(y, x.shape[0]))


def pacgan_discriminator(
    info: DataInfo,
    base: Annotated[str, ComponentRef("discriminator", params="base_params")] = "mlp",
    pack: int = 2,
    base_params: Optional[dict[str, Any]] = None,
) -> PackedDiscriminator:
    """PacGAN (Lin et al. 2018): the base discriminator decides on packs of ``pack`` samples.

    Args:
        info: The dataset's description (injected by the engine).
        base: The registered discriminator to pack (``mlp``, ``dcgan``, ``resnet``, ``biggan``, a
            third party's); it is built for one pack: ``pack`` times the first sample axis
            (features or channels) and packed conditions.
        pack: ``m``, samples per decision (>= 2; Lin et al. use 2, 3 and 4). The batch per process
            and discriminator step, ``train.batch_size / world size``, must be a multiple of it.
        base_params: Parameters of the base discriminator, e.g. ``{width: 64}``.
    """
    if not isinstance(pack, int) or isinstance(pack, bool) or pack < 2:
        raise ValueError(f"discriminator.pack={pack!r}: PacGAN packs at least 2 samples per decision; use an integer "
                         ">= 2 (Lin et al. use 2 to 4), or a plain discriminator (no 'pacgan') for m = 1.")
    if base == "pacgan":
        raise ValueError("discriminator.base='pacgan': packing a packed discriminator only multiplies the pack; "
                         "use one 'pacgan' with pack = m1 x m2 and a plain base such as 'mlp'.")
    params = dict(base_params or {})
    if params.get("aux_classes"):
        raise ValueError("discriminator.base_params.aux_classes=true: a pack has no single class to predict (AC-GAN "
                         "classifies samples, PacGAN decides on packs); drop aux_classes, or do not pack.")
    inner = build_component("discriminator", base, params, name_key="discriminator.base",
                            params_key="discriminator.base_params", info=packed_info(info, pack))
    return PackedDiscriminator(inner, info, pack)
