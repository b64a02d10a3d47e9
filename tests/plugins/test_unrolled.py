"""Unrolled GAN (Metz et al. 2017): the G gradient against a hand-written unrolling, k=0, D untouched, errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.objectives.losses import Hinge, NonSaturating, Unrolled


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class TinyD(nn.Module):
    """Linear - LeakyReLU(0.2) - Linear, optionally with BatchNorm (to see its buffers left alone)."""

    def __init__(self, batchnorm: bool = False) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(2, 16), nn.Linear(16, 1)
        self.bn = nn.BatchNorm1d(16) if batchnorm else None

    def forward(self, x, y=None):
        h = self.l1(x)
        if self.bn is not None:
            h = self.bn(h)
        return self.l2(F.leaky_relu(h, 0.2))


def hand_forward(w, x):
    """TinyD's forward written out on explicit weights w = (W1, b1, W2, b2)."""
    return F.leaky_relu(x @ w[0].T + w[1], 0.2) @ w[2].T + w[3]


def setup(seed=0, batchnorm=False):
    torch.manual_seed(seed)
    D, G = TinyD(batchnorm), nn.Linear(3, 2)
    z, real = torch.randn(16, 3), torch.randn(16, 2) * 0.5 + 1.0
    for p in D.parameters():  # as in the engine's generator phase
        p.requires_grad_(False)
    return D, G, z, real


def g_grad(obj, D, G, z, real):
    G.zero_grad(set_to_none=True)
    out = obj.generator_loss(D, real, G(z), None)
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in G.parameters()]


@pytest.mark.parametrize("base", [NonSaturating, Hinge])
def test_zero_steps_is_the_base_objective_exactly(base):
    D, G, z, real = setup()
    loss0, grads0 = g_grad(base(), D, G, z, real)
    loss, grads = g_grad(Unrolled(base=base.name, steps=0), D, G, z, real)
    assert torch.equal(loss, loss0)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads0))


@pytest.mark.parametrize("k", [1, 2])
def test_generator_gradient_matches_a_hand_written_unrolling(k):
    """k SGD steps of the non-saturating D loss softplus(-D(x)) + softplus(D(G(z))) on a copy of D's
    weights, written out by hand; then G's loss softplus(-D_k(G(z))). Same G gradient to 1e-6."""
    lr = 0.3
    D, G, z, real = setup()
    _, grads = g_grad(Unrolled(base="non-saturating", steps=k, lr=lr), D, G, z, real)

    G.zero_grad(set_to_none=True)
    ref_d = copy.deepcopy(D)
    w = [ref_d.l1.weight, ref_d.l1.bias, ref_d.l2.weight, ref_d.l2.bias]
    w = [t.detach().clone().requires_grad_(True) for t in w]
    fake = G(z)
    for _ in range(k):
        loss_d = F.softplus(-hand_forward(w, real)).mean() + F.softplus(hand_forward(w, fake)).mean()
        gw = torch.autograd.grad(loss_d, w, create_graph=True)
        w = [t - lr * g for t, g in zip(w, gw)]
    F.softplus(-hand_forward(w, fake)).mean().backward()
    ref = [p.grad for p in G.parameters()]
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)

    # the second-order path matters: without it (D's steps taken on a detached G(z)) the gradient differs
    _, grads0 = g_grad(NonSaturating(), D, G, z, real)
    assert max((a - b).abs().max().item() for a, b in zip(grads, grads0)) > 1e-3


def test_the_generator_step_leaves_the_discriminator_alone():
    D, G, z, real = setup(batchnorm=True)
    before = {k: v.clone() for k, v in D.state_dict().items()}
    loss, _ = g_grad(Unrolled(steps=5, lr=0.5), D, G, z, real)
    assert torch.isfinite(loss)
    for k, v in D.state_dict().items():  # weights and BatchNorm running statistics
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in D.parameters())


def test_the_discriminator_update_is_the_base_objectives():
    D, G, z, real = setup()
    fake = G(z).detach()
    u, base = Unrolled(base="hinge", steps=5), Hinge()
    assert torch.equal(u.discriminator_loss(D, real, fake, None).loss, base.discriminator_loss(D, real, fake, None).loss)


def test_weight_clipping_base_clips_every_unrolled_step_and_is_forwarded():
    u = Unrolled(base="wgan", steps=3, lr=10.0)
    assert (u.n_critic, u.weight_clip, u.needs_double_backward) == (5, 0.01, True)
    D, G, z, real = setup()
    with torch.no_grad():
        for p in D.parameters():
            p.clamp_(-0.01, 0.01)
    seen = []
    real_fn = torch.func.functional_call

    def spy(module, state, args):
        seen.append(max(v.abs().max().item() for k, v in state.items()))
        return real_fn(module, state, args)

    import ganforge_plugins.objectives.unrolled as mod
    mod.functional_call, old = spy, mod.functional_call
    try:
        g_grad(u, D, G, z, real)
    finally:
        mod.functional_call = old
    assert seen and max(seen) <= 0.01 + 1e-12  # lr=10 would leave [-0.01, 0.01] without the clip


def test_registry_builds_it_and_records_the_protocol():
    reg = load_registry(warn=False)
    obj = reg.build("objective", {"name": "unrolled", "base": "lsgan", "steps": 10, "lr": 0.05})
    assert isinstance(obj, Unrolled) and obj.inner.name == "lsgan"
    assert obj.protocol() == {"base": "lsgan", "steps": 10, "lr": 0.05, "optimizer": "sgd",
                              "base_protocol": obj.inner.protocol()}
    assert [(p.name, p.default) for p in reg.get("objective", "unrolled").parameters()] == [
        ("base", "non-saturating"), ("steps", 5), ("lr", 0.001), ("base_params", None)]


@pytest.mark.parametrize("entry, pattern", [
    ({"steps": -1}, r"objective\.steps must be an integer >= 0.*got -1; use 5 or 10"),
    ({"steps": 1.5}, r"objective\.steps: expected int, got 1\.5"),
    ({"lr": 0}, r"objective\.lr must be a finite number > 0.*got 0\.0; use 0\.001"),
    ({"lr": float("inf")}, r"objective\.lr must be a finite number > 0.*got inf"),
    ({"base": "non-saturatng"}, r"objective\.base.*non-saturatng.*non-saturating"),
    ({"base": "hinge", "base_params": {"gp_weight": 1.0}}, r"objective\.base_params.*gp_weight"),
])
def test_bad_parameters_are_one_line_config_errors(entry, pattern):
    reg = load_registry(warn=False)
    with pytest.raises(ConfigError, match=pattern) as e:
        reg.build("objective", {"name": "unrolled", **entry})
    assert "\n" not in str(e.value)


def test_unrolling_itself_or_inside_a_wrapper_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"objective\.base .*'unrolled'.*objective\.base=non-saturating"):
        Unrolled(base="unrolled")
    D, G, z, real = setup()
    with pytest.raises(ValueError, match=r"needs the discriminator module.*base: acgan"):
        Unrolled(steps=1).generator_loss(lambda x, y: D(x, y), real, G(z), None)


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_conditional_registered_mlp_discriminator(spectral_norm):
    """The registered MLP with class conditions (and spectral norm's u vector, a buffer): the unrolled
    G gradient is finite, differs from the base's, and D's weights and buffers stay as they were."""
    from ganforge import DataInfo
    from ganforge_plugins.networks.mlp import mlp_discriminator, mlp_generator

    info = DataInfo(sample_shape=(2,), num_classes=3, name="classes")
    torch.manual_seed(0)
    G, D = mlp_generator(info, width=16), mlp_discriminator(info, width=16, spectral_norm=spectral_norm)
    D.train()
    for p in D.parameters():
        p.requires_grad_(False)
    y, real = torch.randint(0, 3, (16,)), torch.randn(16, 2)
    z = torch.randn(16, *G.latent_shape)
    def grads(obj):
        G.zero_grad(set_to_none=True)
        obj.generator_loss(D, real, G(z, y), y).loss.backward()
        return torch.cat([p.grad.flatten() for p in G.parameters() if p.grad is not None])

    g0 = grads(NonSaturating())  # (in train mode the base's own call may advance spectral norm's u)
    before = {k: v.clone() for k, v in D.state_dict().items()}
    g3 = grads(Unrolled(steps=3, lr=0.5))
    assert torch.isfinite(g3).all() and (g3 - g0).abs().max() > 1e-4
    assert all(torch.equal(D.state_dict()[k], v) for k, v in before.items())
