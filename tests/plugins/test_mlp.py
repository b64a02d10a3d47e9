"""The `mlp` generator and discriminator: shapes, conditioning, spectral norm, init, discovery."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import parametrize

from ganforge import DataInfo
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.networks.mlp import MLPDiscriminator, MLPGenerator, mlp_discriminator, mlp_generator

POINTS = DataInfo(sample_shape=(2,), name="points")
IMAGES = DataInfo(sample_shape=(1, 4, 4), kind="image", value_range=(-1.0, 1.0), name="images")
CLASSES = DataInfo(sample_shape=(2,), num_classes=3, name="classes")
CONDS = DataInfo(sample_shape=(3,), cond_dim=2, name="conds")


@pytest.fixture(scope="module")
def registry():
    return load_registry(strict=False, warn=False)


def test_defaults_suit_the_ring() -> None:
    g, d = mlp_generator(POINTS), mlp_discriminator(POINTS)
    assert g.latent_shape == (2,)
    z = torch.randn(7, 2)
    x = g(z)
    assert x.shape == (7, 2)
    assert d(x).shape == (7,)
    assert g.output == "linear"  # points can lie anywhere, no squashing


@pytest.mark.parametrize("activation", ["relu", "leaky-relu", "tanh", "elu"])
def test_any_sample_shape_and_activation(activation: str) -> None:
    g = mlp_generator(IMAGES, latent_dim=5, width=8, depth=3, activation=activation)
    d = mlp_discriminator(IMAGES, width=8, depth=1, activation=activation)
    x = g(torch.randn(3, 5))
    assert x.shape == (3, 1, 4, 4)
    assert g.output == "tanh" and x.abs().max() <= 1.0  # images normalized to [-1, 1]
    assert d(x).shape == (3,)
    hidden = [m for m in g.net if isinstance(m, torch.nn.Linear)]
    assert len(hidden) == 4  # depth hidden layers + the output layer


def test_orthogonal_init() -> None:
    g = mlp_generator(POINTS, width=16, activation="tanh")
    first = g.net[0].weight  # (16, 2): orthonormal columns scaled by tanh's gain
    gram = first.T @ first
    gain = torch.nn.init.calculate_gain("tanh")
    torch.testing.assert_close(gram, gain**2 * torch.eye(2), atol=1e-5, rtol=0)
    assert all(m.bias.abs().max() == 0 for m in g.net if isinstance(m, torch.nn.Linear))


def test_class_conditioning_uses_labels() -> None:
    torch.manual_seed(0)
    g, d = mlp_generator(CLASSES, width=16), mlp_discriminator(CLASSES, width=16)
    assert g.cond.embed is not None and g.cond.embed.num_embeddings == 3
    z = torch.randn(4, 2)
    a = g(z, torch.tensor([0, 0, 0, 0]))
    b = g(z, torch.tensor([1, 1, 1, 1]))
    assert a.shape == (4, 2) and not torch.allclose(a, b)
    assert d(a, torch.tensor([[0], [1], [2], [0]])).shape == (4,)  # (N, 1) labels accepted
    with pytest.raises(ValueError, match="conditional .*3 classes.* needs y"):
        g(z)
    with pytest.raises(TypeError, match="integer tensor of class indices"):
        d(a, torch.zeros(4))


def test_continuous_conditioning_concatenates_y() -> None:
    g, d = mlp_generator(CONDS, width=16), mlp_discriminator(CONDS, width=16)
    assert g.cond.embed is None
    assert g.net[0].in_features == 2 + 2 and d.net[0].in_features == 3 + 2
    y = torch.randn(5, 2)
    x = g(torch.randn(5, 2), y)
    assert x.shape == (5, 3)
    assert d(x, y).shape == (5,)
    with pytest.raises(ValueError, match=r"expected conditions of shape \(5, 2\)"):
        d(x, torch.randn(5, 3))


def test_unconditional_rejects_y_and_bad_shapes() -> None:
    g, d = mlp_generator(POINTS), mlp_discriminator(POINTS)
    with pytest.raises(ValueError, match="unconditional.*pass y=None"):
        g(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"expected noise of shape \(N, 2\), got \(2, 3\)"):
        g(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"expected samples of shape \(N, 2\), got \(2, 5\)"):
        d(torch.randn(2, 5))


def test_spectral_norm_bounds_every_layer() -> None:
    torch.manual_seed(0)
    d = mlp_discriminator(POINTS, width=32, spectral_norm=True)
    g = mlp_generator(POINTS, width=32, spectral_norm=True)
    linears = [m for m in d.net if isinstance(m, torch.nn.Linear)]
    assert linears and all(parametrize.is_parametrized(m, "weight") for m in linears)
    assert all(parametrize.is_parametrized(m, "weight") for m in g.net if isinstance(m, torch.nn.Linear))
    for _ in range(30):  # one power iteration per training-mode forward
        d(torch.randn(8, 2))
    for m in linears:
        assert torch.linalg.matrix_norm(m.weight.detach(), ord=2) == pytest.approx(1.0, abs=0.02)
    # EMA and checkpoints copy networks: a parametrized module must survive both
    clone = copy.deepcopy(d).eval()
    fresh = mlp_discriminator(POINTS, width=32, spectral_norm=True).eval()
    fresh.load_state_dict(d.state_dict())
    x = torch.randn(4, 2)
    d.eval()
    torch.testing.assert_close(clone(x), d(x))
    torch.testing.assert_close(fresh(x), d(x))


def test_gradients_reach_every_parameter() -> None:
    g, d = mlp_generator(CLASSES, width=8), mlp_discriminator(CLASSES, width=8)
    y = torch.tensor([0, 1, 2])
    d(g(torch.randn(3, 2), y), y).sum().backward()
    for net in (g, d):
        assert all(p.grad is not None for p in net.parameters())


def test_bad_parameters_name_themselves() -> None:
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        MLPGenerator(POINTS, width=0)
    with pytest.raises(ValueError, match="activation: unknown activation 'gelu'"):
        MLPDiscriminator(POINTS, activation="gelu")
    both = DataInfo(sample_shape=(2,), num_classes=2, cond_dim=1, name="both")  # allowed since issue 7
    assert MLPGenerator(both, embed_dim=4).cond.out_features == 4 + 1  # class embedding, then the condition


def test_discovered_through_entry_point(registry) -> None:
    assert "mlp" in registry.names("generator") and "mlp" in registry.names("discriminator")
    comp = registry.get("generator", "mlp")
    assert comp.plugin == "mlp"
    params = {p.name: p for p in comp.parameters()}
    assert "info" not in params and params["latent_dim"].default == 2
    g = registry.build("generator", {"name": "mlp", "width": 16, "activation": "tanh"}, info=CLASSES)
    d = registry.build("discriminator", {"name": "mlp", "spectral_norm": True}, info=CLASSES)
    assert isinstance(g, MLPGenerator) and isinstance(d, MLPDiscriminator)
    with pytest.raises(ConfigError, match=r"generator.activation: expected 'relu' \| 'leaky-relu'"):
        registry.build("generator", {"name": "mlp", "activation": "swish"}, info=POINTS)
    with pytest.raises(ConfigError, match="generator .*depth must be an integer >= 1, got 0"):
        registry.build("generator", {"name": "mlp", "depth": 0}, info=POINTS)
