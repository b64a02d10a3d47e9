"""Tests of the image networks plugin: ``dcgan``, ``resnet`` and ``biggan`` generators and discriminators.

Tiny widths and batches of 2-4 keep the whole file fast on two CPU cores.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganforge import DataInfo
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.networks.biggan import biggan_discriminator, biggan_generator, orthogonal_penalty
from ganforge_plugins.networks.dcgan import DCGANGenerator, dcgan_discriminator, dcgan_generator
from ganforge_plugins.networks.layers import ConditionalBatchNorm, SelfAttention
from ganforge_plugins.networks.resnet import resnet_discriminator, resnet_generator

ARCHS = ("dcgan", "resnet", "biggan")
NUM_CLASSES = 5
COND_DIM = 3

# Tiny settings per architecture; biggan's latent must hold one chunk per block + 1 (6 at 128 px).
G_KW: dict[str, dict[str, Any]] = {
    "dcgan": {"latent_dim": 8, "width": 4},
    "resnet": {"latent_dim": 8, "width": 4},
    "biggan": {"latent_dim": 12, "width": 4, "shared_dim": 4},
}
D_KW: dict[str, dict[str, Any]] = {name: {"width": 4} for name in ARCHS}

GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": dcgan_generator,
    "resnet": resnet_generator,
    "biggan": biggan_generator,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": dcgan_discriminator,
    "resnet": resnet_discriminator,
    "biggan": biggan_discriminator,
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_info(channels: int = 3, res: int = 8, cond: str = "none") -> DataInfo:
    return DataInfo(
        sample_shape=(channels, res, res),
        num_classes=NUM_CLASSES if cond == "class" else 0,
        cond_dim=COND_DIM if cond == "continuous" else 0,
        kind="image",
        name="test-images",
    )


def make_y(info: DataInfo, n: int) -> Optional[torch.Tensor]:
    if info.num_classes > 0:
        return torch.arange(n) % info.num_classes
    if info.cond_dim > 0:
        return torch.randn(n, info.cond_dim)
    return None


def build_g(arch: str, info: DataInfo, **kw: Any) -> nn.Module:
    return GENERATORS[arch](info, **{**G_KW[arch], **kw})


def build_d(arch: str, info: DataInfo, **kw: Any) -> nn.Module:
    return DISCRIMINATORS[arch](info, **{**D_KW[arch], **kw})


def sample(g: nn.Module, n: int, y: Optional[torch.Tensor]) -> torch.Tensor:
    return g(torch.randn(n, *g.latent_shape), y)


# -- shapes and ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("res", [8, 16, 32, 128])
@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_range(arch: str, res: int, channels: int) -> None:
    info = make_info(channels, res)
    g, d = build_g(arch, info), build_d(arch, info)
    assert g.latent_shape == (G_KW[arch]["latent_dim"],)
    # Scale z up so tanh saturates somewhere: the range must hold even then.
    x = g(4.0 * torch.randn(2, *g.latent_shape))
    assert x.shape == (2, channels, res, res)
    assert torch.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 1.0
    logits = d(x)
    assert logits.shape == (2,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("cond", ["none", "class", "continuous"])
@pytest.mark.parametrize("arch", ARCHS)
def test_conditional_variants(arch: str, cond: str) -> None:
    info = make_info(3, 16, cond)
    g, d = build_g(arch, info), build_d(arch, info)
    y = make_y(info, 4)
    x = sample(g, 4, y)
    assert x.shape == (4, 3, 16, 16)
    assert d(x, y).shape == (4,)
    if cond == "continuous":  # a single condition may also come as shape (N,)
        info1 = DataInfo(sample_shape=(3, 8, 8), cond_dim=1, kind="image")
        g1 = build_g(arch, info1)
        assert sample(g1, 2, torch.randn(2)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("conditioning", ["concat", "cbn"])
@pytest.mark.parametrize("cond", ["class", "continuous"])
@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_generator_conditioning_modes_use_y(arch: str, cond: str, conditioning: str) -> None:
    info = make_info(1, 8, cond)
    g = build_g(arch, info, conditioning=conditioning).eval()
    z = torch.randn(2, *g.latent_shape)
    y1 = make_y(info, 2)
    y2 = (y1 + 1) % NUM_CLASSES if cond == "class" else y1 + 1.0
    if conditioning == "cbn":  # zero-initialised CBN starts as plain BN: give it something to say
        with torch.no_grad():
            for m in g.modules():
                if isinstance(m, ConditionalBatchNorm):
                    m.gain.weight.normal_(0, 0.5)
    assert not torch.allclose(g(z, y1), g(z, y2))


def test_biggan_generator_uses_y_and_every_z_chunk() -> None:
    info = make_info(3, 16, "class")
    g = build_g("biggan", info).eval()
    z = torch.randn(2, *g.latent_shape)
    y = make_y(info, 2)
    base = g(z, y)
    assert not torch.allclose(base, g(z, (y + 1) % NUM_CLASSES))
    start = 0
    for size in g.chunks:  # hierarchical latent: each chunk (input layer, every block) matters
        z2 = z.clone()
        z2[:, start : start + size] += 1.0
        assert not torch.allclose(base, g(z2, y)), f"chunk at {start} has no effect"
        start += size


@pytest.mark.parametrize("cond", ["class", "continuous"])
@pytest.mark.parametrize(
    "arch,conditioning",
    [("dcgan", "projection"), ("dcgan", "concat"), ("resnet", "projection"), ("resnet", "concat"), ("biggan", "projection")],
)
def test_discriminator_uses_y(arch: str, conditioning: str, cond: str) -> None:
    info = make_info(3, 8, cond)
    d = build_d(arch, info, conditioning=conditioning).eval()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    y1 = make_y(info, 2)
    y2 = (y1 + 1) % NUM_CLASSES if cond == "class" else y1 + 1.0
    assert not torch.allclose(d(x, y1), d(x, y2))


@pytest.mark.parametrize("arch", ARCHS)
def test_projection_adds_inner_product_with_embedding(arch: str) -> None:
    """logit(x, y1) - logit(x, y2) == <embed(y1) - embed(y2), features(x)> (Miyato & Koyama 2018)."""
    info = make_info(1, 8, "class")
    d = build_d(arch, info, conditioning="projection").eval()
    captured: dict[str, torch.Tensor] = {}
    d.head.register_forward_pre_hook(lambda m, args: captured.__setitem__("h", args[0]))
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    y1, y2 = torch.tensor([0, 1]), torch.tensor([2, 3])
    diff = d(x, y1) - d(x, y2)
    expected = ((d.head.embed(y1) - d.head.embed(y2)) * captured["h"]).sum(dim=1)
    torch.testing.assert_close(diff, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_conditioning_none_ignores_y(arch: str) -> None:
    info = make_info(1, 8, "class")
    d = build_d(arch, info, conditioning="none").eval()
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(d(x, torch.tensor([0, 1])), d(x, torch.tensor([3, 4])))
    torch.testing.assert_close(d(x, torch.tensor([0, 1])), d(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_aux_classes_output(arch: str) -> None:
    info = make_info(3, 16, "class")
    d = build_d(arch, info, aux_classes=True)
    out = d(torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 4]))
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == (3,)
    assert out[1].shape == (3, NUM_CLASSES)
    with pytest.raises(ValueError, match="aux_classes=True needs class-labelled data"):
        build_d(arch, make_info(3, 16, "continuous"), aux_classes=True)


# -- spectral norm and batch norm -----------------------------------------------------------------


def weight_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
    return [(name, m) for name, m in module.named_modules() if isinstance(m, kinds)]


def has_sn(m: nn.Module) -> bool:
    return parametrize.is_parametrized(m, "weight")


def test_spectral_norm_defaults() -> None:
    info = make_info(3, 16, "class")
    # Residual discriminators: every layer with a weight, the projection embedding included.
    for arch in ("resnet", "biggan"):
        layers = weight_layers(build_d(arch, info, aux_classes=True, attention_resolution=8)
                               if arch == "biggan" else build_d(arch, info, aux_classes=True))
        assert layers and all(has_sn(m) for _, m in layers), [n for n, m in layers if not has_sn(m)]
    # BigGAN generator: every layer but the shared embedding (a plain lookup table, as in BigGAN).
    g = build_g("biggan", info, attention_resolution=16)
    missing = [n for n, m in weight_layers(g) if not has_sn(m) and not n.startswith("shared.")]
    assert not missing, missing
    assert not has_sn(g.shared.table)
    # DCGAN and SNGAN generators: no spectral norm.
    for arch in ("dcgan", "resnet"):
        assert not any(has_sn(m) for _, m in weight_layers(build_g(arch, info)))


def test_dcgan_discriminator_batch_norm_or_spectral_norm() -> None:
    info = make_info(3, 32, "class")
    d_bn = build_d("dcgan", info)
    bns = [m for m in d_bn.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2  # 3 stride-2 layers from 32 to 4, no BN on the first
    assert not any(has_sn(m) for _, m in weight_layers(d_bn))
    d_sn = build_d("dcgan", info, spectral_norm=True, conditioning="projection")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d_sn.modules())
    assert all(has_sn(m) for name, m in weight_layers(d_sn) if not name.startswith("cond_map"))
    assert d_sn(torch.randn(2, 3, 32, 32), torch.tensor([0, 1])).shape == (2,)


def test_spectral_norm_can_be_turned_off() -> None:
    info = make_info(3, 8)
    for arch in ("resnet", "biggan"):
        assert not any(has_sn(m) for _, m in weight_layers(build_d(arch, info, spectral_norm=False)))
    assert not any(has_sn(m) for _, m in weight_layers(build_g("biggan", info, spectral_norm=False)))


def test_dcgan_init_is_normal_002() -> None:
    g = build_g("dcgan", make_info(3, 32), width=16)
    w = g.ups[0].weight
    assert abs(w.std().item() - 0.02) < 0.004 and abs(w.mean().item()) < 0.004


# -- self-attention ---------------------------------------------------------------------------------


def test_biggan_self_attention() -> None:
    info = make_info(3, 16, "class")
    g = build_g("biggan", info, attention_resolution=8)
    d = build_d("biggan", info, attention_resolution=8)
    assert sum(isinstance(m, SelfAttention) for m in g.modules()) == 1
    assert sum(isinstance(m, SelfAttention) for m in d.modules()) == 1
    y = make_y(info, 2)
    assert d(sample(g, 2, y), y).shape == (2,)
    with pytest.raises(ValueError, match=r"attention_resolution=12 .*expected one of 8, 16"):
        build_g("biggan", info, attention_resolution=12)
    with pytest.raises(ValueError, match=r"attention_resolution=16 .*expected one of 8, 4"):
        build_d("biggan", info, attention_resolution=16)


# -- orthogonal regularization --------------------------------------------------------------------


def test_orthogonal_penalty_zero_for_orthogonal_positive_otherwise() -> None:
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert orthogonal_penalty(q).item() == pytest.approx(0.0, abs=1e-10)
    # Only off-diagonal inner products count: orthogonal rows of any norms are free.
    assert orthogonal_penalty(q * torch.arange(1.0, 7.0)[:, None]).item() == pytest.approx(0.0, abs=1e-8)
    # A 4-D filter bank with orthonormal flattened filters (out=4 <= in*k*k=18).
    filters, _ = torch.linalg.qr(torch.randn(18, 4))
    assert orthogonal_penalty(filters.T.reshape(4, 2, 3, 3)).item() == pytest.approx(0.0, abs=1e-10)
    assert orthogonal_penalty(torch.randn(6, 6)).item() > 0
    w = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # rows' inner product 1, counted twice (symmetric)
    assert orthogonal_penalty(w).item() == pytest.approx(2.0)


def test_biggan_regularization_loss() -> None:
    info = make_info(3, 8, "class")
    assert not hasattr(build_g("biggan", info), "regularization_loss")  # off by default: nothing to add
    beta = 1e-2
    g = build_g("biggan", info, orthogonal_reg=beta)
    names = [n for n, _ in g.regularized_parameters()]
    assert names and not any(n.startswith("shared.") for n in names)
    loss = g.regularization_loss()
    expected = beta * sum(orthogonal_penalty(p) for _, p in g.regularized_parameters())
    assert loss.ndim == 0 and loss.item() > 0
    torch.testing.assert_close(loss, expected)
    # Zero when every regularized weight has mutually orthogonal rows (here: rows supported on
    # disjoint columns, possible as long as out <= in; otherwise zero the extra rows).
    with torch.no_grad():
        for _, p in g.regularized_parameters():
            w = torch.zeros(p.shape[0], p[0].numel())
            rows = min(w.shape)
            w[torch.arange(rows), torch.arange(rows)] = 1.0
            p.copy_(w.reshape(p.shape))
    assert g.regularization_loss().item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="orthogonal_reg must be a number >= 0"):
        build_g("biggan", info, orthogonal_reg=-1.0)


def test_regularization_loss_backward_reaches_weights() -> None:
    g = build_g("biggan", make_info(1, 8), orthogonal_reg=1e-4)
    g.regularization_loss().backward()
    for name, p in g.regularized_parameters():
        assert p.grad is not None, name
        if p.shape[0] > 1:  # a single filter (1-channel output layer) has no pair to decorrelate
            assert p.grad.abs().sum() > 0, name


# -- gradients --------------------------------------------------------------------------------------


def open_attention(module: nn.Module) -> None:
    """SAGAN's gamma starts at 0, which blocks gradients to the attention convs: open it."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, SelfAttention):
                m.gamma.fill_(0.5)
            if isinstance(m, ConditionalBatchNorm) and not has_sn(m.gain):
                m.gain.weight.normal_(0, 0.1)  # zero-init CBN: let gradients reach every layer


def assert_all_grads(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


@pytest.mark.parametrize("cond", ["none", "class", "continuous"])
@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_every_parameter(arch: str, cond: str) -> None:
    info = make_info(3, 16, cond)
    extra_g = {"attention_resolution": 8} if arch == "biggan" else {}
    extra_d = {"attention_resolution": 8} if arch == "biggan" else {}
    aux = cond == "class"
    g = build_g(arch, info, **extra_g)
    d = build_d(arch, info, aux_classes=aux, **extra_d)
    open_attention(g)
    open_attention(d)
    y = make_y(info, 4)
    # Each class appears in the batch so every embedding row gets a gradient.
    if cond == "class":
        y = torch.tensor([0, 1, 2, 3, 4])
    n = 5 if cond == "class" else 4
    out = d(sample(g, n, y), y)
    if aux:
        logits, class_logits = out
        loss = logits.sum() + nn.functional.cross_entropy(class_logits, y)
    else:
        loss = out.sum()
    loss.backward()
    assert_all_grads(g)
    assert_all_grads(d)


def test_backward_with_dcgan_options() -> None:
    info = make_info(1, 8, "class")
    y = torch.arange(NUM_CLASSES)
    for g_cond in ("concat", "cbn"):
        for d_kw in ({"conditioning": "projection", "spectral_norm": True}, {"conditioning": "concat"}):
            g = build_g("dcgan", info, conditioning=g_cond)
            d = build_d("dcgan", info, **d_kw)
            open_attention(g)
            d(sample(g, NUM_CLASSES, y), y).sum().backward()
            assert_all_grads(g)
            assert_all_grads(d)


def test_dcgan_generator_coords_are_coordconv() -> None:
    """coords: every transposed conv gets x and y channels; without it the generator is unchanged."""
    from ganforge_plugins.networks.dcgan import coordinate_channels

    grid = coordinate_channels(torch.zeros(2, 5, 3, 4))
    assert grid.shape == (2, 2, 3, 4)
    torch.testing.assert_close(grid[1, 0, 2], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))  # x along the width
    torch.testing.assert_close(grid[0, 1, :, 3], torch.tensor([-1.0, 0.0, 1.0]))  # y along the height
    info = make_info(1, 16, "class")
    y = torch.arange(NUM_CLASSES)
    torch.manual_seed(1)
    plain = build_g("dcgan", info, conditioning="cbn")
    torch.manual_seed(1)
    coord = build_g("dcgan", info, conditioning="cbn", coords=True)
    convs = [*coord.ups, coord.to_image]
    assert [m.in_channels for m in convs] == [m.in_channels + 2 for m in (*plain.ups, plain.to_image)]
    z = torch.randn(NUM_CLASSES, *coord.latent_shape)
    out = coord(z, y)
    assert out.shape == (NUM_CLASSES, 1, 16, 16) and out.abs().max() <= 1
    out.sum().backward()
    assert_all_grads(coord)
    # the output depends on the coordinate channels: zeroing their weights changes it
    with torch.no_grad():
        for m in convs:
            m.weight[-2:] = 0
    assert not torch.allclose(coord(z, y), out)
    # ... and with them zeroed it is the plain generator with the same other weights
    state = {k: v[:-2] if k.endswith("weight") and any(k.startswith(p) for p in ("ups.", "to_image."))
             else v for k, v in coord.state_dict().items()}
    plain.load_state_dict(state)
    torch.testing.assert_close(coord(z, y), plain(z, y))
    with pytest.raises(ValueError, match=r"coords='yes'; expected true or false"):
        build_g("dcgan", info, coords="yes")


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,message",
    [
        ((3, 24, 24), r"power of two from 8 to 128 .*got 24"),
        ((3, 32, 16), r"square images \(H == W\), got H=32, W=16"),
        ((1, 4, 4), r"power of two from 8 to 128 .*got 4"),
        ((1, 256, 256), r"power of two from 8 to 128 .*got 256"),
        ((2,), r"expect \(C, H, W\)"),
    ],
)
@pytest.mark.parametrize("kind", ["generator", "discriminator"])
@pytest.mark.parametrize("arch", ARCHS)
def test_bad_resolution_is_a_clear_error(arch: str, kind: str, shape: tuple[int, ...], message: str) -> None:
    info = DataInfo(sample_shape=shape, kind="image", name="odd")
    build = build_g if kind == "generator" else build_d
    with pytest.raises(ValueError, match=message) as exc:
        build(arch, info)
    text = str(exc.value)
    assert "info.sample_shape" in text and str(shape) in text and f"'{arch}'" in text


def test_wrong_inputs_are_clear_errors() -> None:
    info = make_info(3, 8, "class")
    g, d = build_g("dcgan", info), build_d("dcgan", info)
    with pytest.raises(ValueError, match=r"needs y; got y=None"):
        sample(g, 2, None)
    with pytest.raises(ValueError, match=r"integer tensor of class indices"):
        sample(g, 2, torch.randn(2))
    with pytest.raises(ValueError, match=r"expected 2 class labels"):
        sample(g, 2, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected noise of shape \(N, 8\)"):
        g(torch.randn(2, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 8, 8\)"):
        d(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    uncond = build_g("resnet", make_info(3, 8))
    with pytest.raises(ValueError, match=r"unconditional .* pass y=None"):
        sample(uncond, 2, torch.tensor([0, 1]))
    cont = build_d("biggan", make_info(3, 8, "continuous"))
    with pytest.raises(ValueError, match=r"expected conditions of shape \(2, 3\)"):
        cont(torch.randn(2, 3, 8, 8), torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"width must be an integer >= 1, got 0"):
        build_d("resnet", info, width=0)
    with pytest.raises(ValueError, match=r"latent_dim must be >= 3 for generator 'biggan' at 16x16, got 2"):
        build_g("biggan", make_info(3, 16), latent_dim=2)  # one chunk for the input, one per block
    with pytest.raises(ValueError, match=r"conditioning: unknown value 'cbn'"):
        build_d("dcgan", info, conditioning="cbn")


# -- registry -----------------------------------------------------------------------------------------


def test_registry_builds_every_network() -> None:
    reg = load_registry(warn=False)
    info = DataInfo(sample_shape=(1, 8, 8), num_classes=10, kind="image")
    G = reg.build("generator", {"name": "dcgan", "width": 8}, info=info)
    assert isinstance(G, DCGANGenerator)
    y = torch.tensor([3, 7])
    x = G(torch.randn(2, *G.latent_shape), y)
    assert x.shape == (2, 1, 8, 8)
    for arch in ARCHS:
        assert reg.get("generator", arch).plugin == "image-networks"
        g = reg.build("generator", {"name": arch, **G_KW[arch]}, info=info)
        d = reg.build("discriminator", {"name": arch, "width": 4, "aux_classes": True}, info=info)
        logits, class_logits = d(g(torch.randn(2, *g.latent_shape), y), y)
        assert logits.shape == (2,) and class_logits.shape == (2, 10)


def test_registry_schema_and_errors() -> None:
    reg = load_registry(warn=False)
    params = {p.name: p for p in reg.get("generator", "biggan").parameters()}
    assert list(params) == [
        "latent_dim", "width", "shared_dim", "attention_resolution", "spectral_norm", "orthogonal_reg"
    ]
    assert params["attention_resolution"].default is None
    g = reg.build("generator", {"name": "biggan", "latent_dim": 12, "width": 4, "orthogonal_reg": "1e-4"},
                  info=make_info(3, 8))
    assert g.orthogonal_reg == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match=r"generator.conditioning: expected 'concat' \| 'cbn', got 'projection'"):
        reg.build("generator", {"name": "dcgan", "conditioning": "projection"}, info=make_info())
    with pytest.raises(ConfigError, match=r"^discriminator \(discriminator 'resnet' from .*info.sample_shape .*got 24"):
        reg.build("discriminator", {"name": "resnet"}, info=make_info(3, 24))
    assert not [f for f in reg.failures if f.name == "image-networks"]


@pytest.mark.parametrize("arch", ARCHS)
def test_copy_and_state_dict_round_trip(arch: str) -> None:
    """EMA deep-copies the generator and checkpoints save state dicts: both must reproduce outputs."""
    info = make_info(3, 8, "class")
    kw = {"orthogonal_reg": 1e-4} if arch == "biggan" else {}
    g, d = build_g(arch, info, **kw), build_d(arch, info)
    y = make_y(info, 2)
    z = torch.randn(2, *g.latent_shape)
    x = sample(g, 2, y)
    d(x, y)  # one training-mode step updates BN statistics and spectral-norm vectors
    g.eval(), d.eval()
    g_copy = copy.deepcopy(g)
    torch.testing.assert_close(g_copy(z, y), g(z, y))
    if arch == "biggan":
        torch.testing.assert_close(g_copy.regularization_loss(), g.regularization_loss())
    g_new, d_new = build_g(arch, info, **kw), build_d(arch, info)
    g_new.load_state_dict(g.state_dict())
    d_new.load_state_dict(d.state_dict())
    g_new.eval(), d_new.eval()
    torch.testing.assert_close(g_new(z, y), g(z, y))
    torch.testing.assert_close(d_new(x, y), d(x, y))
