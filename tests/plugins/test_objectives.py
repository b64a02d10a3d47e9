"""The first-party objectives against closed forms: values, gradients, penalties, Dirac-GAN fields."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge import DataInfo, LossOutput, Objective
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge_plugins.objectives.losses import (
    ACGAN,
    WGAN,
    WGANGP,
    Hinge,
    LeastSquares,
    Minimax,
    NonSaturating,
)


@pytest.fixture(autouse=True)
def float64():
    """Closed forms are compared to 1e-10: run in float64, and restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


NAMES = ["acgan", "hinge", "lsgan", "minimax", "non-saturating", "wgan", "wgan-gp"]

# logits chosen away from the hinge kinks at ±1
REAL = [-2.5, -0.3, 0.4, 3.0]
FAKE = [-3.0, -0.5, 0.2, 2.0]


def identity_d(x, y=None):
    """A 'discriminator' whose output is its input: the loss's gradient w.r.t. x is the one w.r.t. the logit."""
    return x


def losses_and_grads(obj: Objective):
    """D loss, G loss and their gradients w.r.t. real and fake logits (identity discriminator)."""
    lr = torch.tensor(REAL).reshape(-1, 1).requires_grad_(True)  # (N, 1) like a real D
    lf = torch.tensor(FAKE).reshape(-1, 1).requires_grad_(True)
    d_out = obj.discriminator_loss(identity_d, lr, lf, None)
    g_real, g_fake = torch.autograd.grad(d_out.loss, (lr, lf))
    lf2 = torch.tensor(FAKE).reshape(-1, 1).requires_grad_(True)
    g_out = obj.generator_loss(identity_d, lr.detach(), lf2, None)
    (gg_fake,) = torch.autograd.grad(g_out.loss, lf2)
    return d_out, g_out, g_real.flatten(), g_fake.flatten(), gg_fake.flatten()


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def mean(values) -> float:
    return sum(values) / len(values)


def close(tensor: torch.Tensor, values, tol: float = 1e-10) -> bool:
    return torch.allclose(tensor, torch.tensor(values, dtype=tensor.dtype).reshape(tensor.shape), atol=tol, rtol=tol)


N = len(REAL)


# -- per-logit values and gradients ---------------------------------------------------------------


def test_minimax_is_the_saturating_game():
    d_out, g_out, g_real, g_fake, gg_fake = losses_and_grads(Minimax())
    # D maximizes E log D(x) + E log(1 - D(G(z))), i.e. minimizes its negative
    v = mean([math.log(sigmoid(l)) for l in REAL]) + mean([math.log(1 - sigmoid(l)) for l in FAKE])
    assert close(d_out.loss, -v)
    assert close(g_real, [-(1 - sigmoid(l)) / N for l in REAL])
    assert close(g_fake, [sigmoid(l) / N for l in FAKE])
    # G minimizes E log(1 - D(G(z))); d/dl = -σ(l): it saturates where D rejects the sample
    assert close(g_out.loss, mean([math.log(1 - sigmoid(l)) for l in FAKE]))
    assert close(gg_fake, [-sigmoid(l) / N for l in FAKE])


def test_non_saturating_generator():
    d_out, g_out, g_real, g_fake, gg_fake = losses_and_grads(NonSaturating())
    d_ref, *_ = losses_and_grads(Minimax())
    assert close(d_out.loss, d_ref.loss.item())  # same discriminator
    assert close(g_out.loss, mean([-math.log(sigmoid(l)) for l in FAKE]))
    assert close(gg_fake, [-(1 - sigmoid(l)) / N for l in FAKE])


def test_hinge():
    d_out, g_out, g_real, g_fake, gg_fake = losses_and_grads(Hinge())
    assert close(d_out.loss, mean([max(0, 1 - l) for l in REAL]) + mean([max(0, 1 + l) for l in FAKE]))
    assert close(g_real, [-(l < 1) / N for l in REAL])
    assert close(g_fake, [(l > -1) / N for l in FAKE])
    assert close(g_out.loss, -mean(FAKE))
    assert close(gg_fake, [-1 / N] * N)


def test_lsgan():
    d_out, g_out, g_real, g_fake, gg_fake = losses_and_grads(LeastSquares())
    assert close(d_out.loss, 0.5 * mean([(l - 1) ** 2 for l in REAL]) + 0.5 * mean([l**2 for l in FAKE]))
    assert close(g_real, [(l - 1) / N for l in REAL])
    assert close(g_fake, [l / N for l in FAKE])
    assert close(g_out.loss, 0.5 * mean([(l - 1) ** 2 for l in FAKE]))
    assert close(gg_fake, [(l - 1) / N for l in FAKE])


def test_wgan():
    d_out, g_out, g_real, g_fake, gg_fake = losses_and_grads(WGAN())
    assert close(d_out.loss, mean(FAKE) - mean(REAL))
    assert close(d_out.logs["wasserstein"], mean(REAL) - mean(FAKE))
    assert close(g_real, [-1 / N] * N) and close(g_fake, [1 / N] * N)
    assert close(g_out.loss, -mean(FAKE))
    assert close(gg_fake, [-1 / N] * N)


@pytest.mark.parametrize("cls", [Minimax, NonSaturating])
def test_logistic_losses_are_stable_at_extreme_logits(cls):
    # naive log(sigmoid(l)) is -inf at l = -800 in float64; softplus forms stay finite
    big = torch.tensor([[800.0], [-800.0]], requires_grad=True)
    for out in (cls().discriminator_loss(identity_d, big, big, None), cls().generator_loss(identity_d, big, big, None)):
        (g,) = torch.autograd.grad(out.loss, big)
        assert torch.isfinite(out.loss) and torch.isfinite(g).all()


def test_logs_are_detached():
    lr, lf = torch.tensor(REAL).reshape(-1, 1), torch.tensor(FAKE).reshape(-1, 1)
    for obj in (Minimax(r1_weight=1.0, r1_every=1), NonSaturating(), Hinge(), LeastSquares(), WGAN(), WGANGP(eps_drift=1e-3)):
        out = obj.discriminator_loss(identity_d, lr, lf, None)
        assert isinstance(out, LossOutput)
        assert {"d_real", "d_fake"} <= set(out.logs)
        # handed over unreduced (the engine logs the mean on logging steps)
        assert close(out.logs["d_real"].mean(), mean(REAL)) and close(out.logs["d_fake"].mean(), mean(FAKE))
        assert all(not v.requires_grad for v in out.logs.values())
        assert all(v.dim() == 0 for k, v in out.logs.items() if k not in ("d_real", "d_fake"))
        assert "d_fake" in obj.generator_loss(identity_d, lr, lf, None).logs


# -- penalties ----------------------------------------------------------------------------------------


class Linear(nn.Module):
    """D(x) = w·flatten(x) + b: ∇ₓD = w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, y=None):
        return x.flatten(1) @ self.w + self.b


def test_wgan_gp_penalty_on_a_linear_critic():
    torch.manual_seed(0)
    w = [0.5, -1.0, 2.0, 0.25]  # images (N, 1, 2, 2) flatten to 4 features
    d = Linear(w)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    obj = WGANGP(gp_weight=10.0, eps_drift=0.001)
    out = obj.discriminator_loss(d, real, fake, None)
    norm = math.sqrt(sum(v * v for v in w))
    real_logits, fake_logits = d(real).detach(), d(fake).detach()
    # ∇D(x̂) = w for every interpolate: penalty λ(‖w‖ - 1)² whatever α is
    assert close(out.logs["gp"], (norm - 1) ** 2)
    expected = fake_logits.mean() - real_logits.mean() + 10.0 * (norm - 1) ** 2 + 0.001 * real_logits.pow(2).mean()
    assert close(out.loss, expected.item())
    assert close(out.logs["drift"], real_logits.pow(2).mean().item())
    # the penalty is differentiable w.r.t. the critic's weights (double backward)
    out.loss.backward()
    gp_grad = 10.0 * 2 * (norm - 1) * torch.tensor(w) / norm
    adv_grad = fake.flatten(1).mean(0) - real.flatten(1).mean(0) + 0.001 * 2 * (real_logits[:, None] * real.flatten(1)).mean(0)
    assert torch.allclose(d.w.grad, gp_grad + adv_grad, atol=1e-10)
    assert d.b.grad is not None  # every critic parameter is in the graph (DDP)


def test_wgan_gp_interpolates_with_torch_rand_on_the_device_of_real():
    # D(x) = ‖x‖²/2 has ∇D = x, so the penalty reveals the interpolates x̂ = α·real + (1-α)·fake
    d = lambda x, y=None: 0.5 * x.flatten(1).pow(2).sum(1)  # noqa: E731
    real, fake = torch.zeros(5, 3), torch.tensor([[1.0, 2.0, 2.0]]).repeat(5, 1)  # ‖fake‖ = 3
    torch.manual_seed(123)
    gp = WGANGP().discriminator_loss(d, real, fake, None).logs["gp"]
    torch.manual_seed(123)
    alpha = torch.rand(5, 1, device=real.device, dtype=real.dtype)
    assert close(gp, ((3.0 * (1 - alpha) - 1) ** 2).mean().item())


def test_wgan_gp_needs_paired_batches():
    with pytest.raises(ValueError, match=r"real of shape \(4, 2\) and fake of shape \(3, 2\)"):
        WGANGP().discriminator_loss(lambda x, y: x.sum(1), torch.zeros(4, 2), torch.zeros(3, 2), None)


@pytest.mark.parametrize("cls", [Minimax, NonSaturating, Hinge, LeastSquares])
def test_r1_penalty_on_a_linear_discriminator(cls):
    w = [0.5, -1.0, 2.0]
    d_plain, d_r1 = Linear(w), Linear(w)
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    plain = cls().discriminator_loss(d_plain, real, fake, None)
    obj = cls(r1_weight=4.0, r1_every=1)  # eager
    assert obj.needs_double_backward and not cls().needs_double_backward
    with_r1 = obj.discriminator_loss(d_r1, real, fake, None)
    sq = sum(v * v for v in w)
    assert close(with_r1.logs["r1"], sq)  # ‖∇ₓD‖² = ‖w‖²
    assert close(with_r1.loss, plain.loss.item() + 0.5 * 4.0 * sq)  # γ/2 E‖∇ₓD‖²
    plain.loss.backward()
    with_r1.loss.backward()
    assert torch.allclose(d_r1.w.grad, d_plain.w.grad + 4.0 * torch.tensor(w), atol=1e-10)


@pytest.mark.parametrize("cls", [Minimax, NonSaturating, Hinge, LeastSquares])
def test_lazy_r1_moves_the_penalty_to_dreg_with_weight_times_k(cls):
    """r1_every = k: Dmain has no R1; Dreg is k · γ/2 · E‖∇ₓD‖², so over k steps the same penalty."""
    w = [0.5, -1.0, 2.0]
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    eager, lazy = cls(r1_weight=4.0, r1_every=1), cls(r1_weight=4.0)  # lazy by default, k = 16
    assert lazy.needs_double_backward and lazy.reg_every == 16 and eager.reg_every == 1
    d_main = lazy.discriminator_loss(Linear(w), real, fake, None)
    assert "r1" not in d_main.logs
    assert close(d_main.loss, cls().discriminator_loss(Linear(w), real, fake, None).loss.item())
    d = Linear(w)
    reg = lazy.discriminator_regularization(d, real, fake, None)
    sq = sum(v * v for v in w)
    assert close(reg.logs["r1"], sq) and close(reg.loss, 16 * 0.5 * 4.0 * sq)
    reg.loss.backward()
    assert torch.allclose(d.w.grad, 16 * 4.0 * torch.tensor(w), atol=1e-10)
    # the eager penalty is what Dreg adds at k = 1
    e = eager.discriminator_loss(Linear(w), real, fake, None)
    assert close(e.loss, d_main.loss.item() + reg.loss.item() / 16)


def test_lazy_gradient_penalty():
    lazy = WGANGP(gp_every=4)
    d = Linear([3.0, 4.0])
    real, fake = torch.randn(2, 2), torch.randn(2, 2)
    main = lazy.discriminator_loss(d, real, fake, None)
    assert "gp" not in main.logs and close(main.loss, WGAN().discriminator_loss(d, real, fake, None).loss.item())
    reg = lazy.discriminator_regularization(d, real, fake, None)
    assert close(reg.logs["gp"], 16.0) and close(reg.loss, 4 * 10.0 * 16.0)  # ‖∇D‖ = 5: (5 − 1)² = 16
    acgan = ACGAN(base="minimax", base_params={"r1_weight": 1.0, "r1_every": 4})
    d2, y = ACDisc(), torch.tensor([0, 1])
    out = acgan.discriminator_regularization(d2, torch.randn(2, 3), torch.randn(2, 3), y)
    assert "r1" in out.logs and out.loss.item() > 0


def test_penalties_are_computed_under_no_grad():
    with torch.no_grad():
        out = NonSaturating(r1_weight=1.0, r1_every=1).discriminator_loss(Linear([3.0, 4.0]), torch.randn(2, 2), torch.randn(2, 2), None)
        gp = WGANGP().discriminator_loss(Linear([3.0, 4.0]), torch.randn(2, 2), torch.randn(2, 2), None)
    assert close(out.logs["r1"], 25.0) and close(gp.logs["gp"], 16.0)


# -- what objectives ask of the engine ------------------------------------------------------------


def test_engine_attributes():
    assert (WGAN().n_critic, WGAN().weight_clip, WGAN().needs_double_backward) == (5, 0.01, False)
    assert WGAN(weight_clip=None).weight_clip is None
    assert WGAN(weight_clip=0.05, n_critic=2).protocol() == {"weight_clip": 0.05, "n_critic": 2}
    gp = WGANGP()
    assert (gp.n_critic, gp.weight_clip, gp.needs_double_backward, gp.gp_weight, gp.eps_drift) == (5, None, True, 10.0, 0.0)
    for cls in (Minimax, NonSaturating, Hinge, LeastSquares):
        assert (cls().n_critic, cls().weight_clip, cls().needs_double_backward) == (1, None, False)
    assert Minimax(r1_weight=2.0).protocol() == {"r1_weight": 2.0, "r1_every": 16, "needs_double_backward": True}
    assert (Minimax(r1_weight=2.0, r1_every=16).reg_every, Minimax(r1_every=16).reg_every) == (16, 1)  # no R1: no Dreg
    assert (WGANGP().reg_every, WGANGP(gp_every=4).reg_every, WGAN().reg_every) == (1, 4, 1)
    assert ACGAN(base="minimax", base_params={"r1_weight": 1.0, "r1_every": 8}).reg_every == 8


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: WGAN(weight_clip=-0.1), r"weight_clip must be > 0, got -0.1; use 0.01"),
        (lambda: WGAN(n_critic=0), r"n_critic must be >= 1 .*got 0; use 5"),
        (lambda: WGANGP(gp_weight=-1.0), r"gp_weight must be >= 0, got -1.0; use 10.0"),
        (lambda: WGANGP(eps_drift=float("nan")), r"eps_drift must be >= 0, got nan"),
        (lambda: Hinge(r1_weight=-3.0), r"r1_weight must be >= 0, got -3.0; use 0 to disable"),
        (lambda: Hinge(r1_weight=1.0, r1_every=0), r"r1_every must be an integer >= 1 .*got 0; use 1 .* or 16"),
        (lambda: WGANGP(gp_every=2.5), r"gp_every must be an integer >= 1 .*got 2.5; use 1"),
    ],
)
def test_bad_parameters_name_the_parameter_value_and_fix(build, text):
    with pytest.raises(ValueError, match=text):
        build()


# -- AC-GAN ---------------------------------------------------------------------------------------


class ACDisc(nn.Module):
    """Linear adversarial head and linear class head, counting forward calls."""

    def __init__(self, aux: bool = True):
        super().__init__()
        torch.manual_seed(1)
        self.adv, self.cls, self.aux, self.calls = nn.Linear(3, 1), nn.Linear(3, 4), aux, 0

    def forward(self, x, y=None):
        self.calls += 1
        return (self.adv(x), self.cls(x)) if self.aux else self.adv(x)


def test_acgan_adds_class_terms_without_extra_forward_passes():
    d = ACDisc()
    real, fake, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    obj = ACGAN(class_weight=0.5)
    out = obj.discriminator_loss(d, real, fake, y)
    assert d.calls == 2  # the class logits come from the base objective's own forward passes
    base = NonSaturating().discriminator_loss(d, real, fake, None).loss
    ce_real, ce_fake = F.cross_entropy(d(real)[1], y), F.cross_entropy(d(fake)[1], y)
    assert close(out.loss, (base + 0.5 * (ce_real + ce_fake)).item())
    assert close(out.logs["cls_real"], ce_real.item()) and {"d_real", "d_fake", "acc_fake"} <= set(out.logs)
    d.calls = 0
    g = obj.generator_loss(d, real, fake, y)
    assert d.calls == 1
    assert close(g.loss, (NonSaturating().generator_loss(d, real, fake, None).loss + 0.5 * ce_fake).item())


def test_acgan_over_penalized_bases():
    d, real, fake, y = ACDisc(), torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    gp = ACGAN(base="wgan-gp", base_params={"gp_weight": 5.0})
    assert (gp.n_critic, gp.needs_double_backward, gp.inner.gp_weight) == (5, True, 5.0)
    assert gp.protocol()["base_protocol"]["gp_weight"] == 5.0
    out = gp.discriminator_loss(d, real, fake, y)
    assert "gp" in out.logs and d.calls == 3  # real, fake, interpolates
    d.calls = 0
    r1 = ACGAN(base="minimax", base_params={"r1_weight": 1.0, "r1_every": 1}).discriminator_loss(d, real, fake, y)
    assert "r1" in r1.logs and d.calls == 2  # R1's detached copy of real is recognized as real
    assert ACGAN(base="wgan").weight_clip == 0.01


def test_acgan_errors():
    real, fake, y = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"returns \(logits, class_logits\), but it returned only logits"):
        ACGAN().discriminator_loss(ACDisc(aux=False), real, fake, y)
    with pytest.raises(ValueError, match="needs class labels y, got None"):
        ACGAN().generator_loss(ACDisc(), real, fake, None)
    with pytest.raises(ValueError, match="needs integer class labels"):
        ACGAN().generator_loss(ACDisc(), real, fake, torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"dataset 'ring8' has num_classes=0"):
        ACGAN(info=DataInfo(sample_shape=(2,), name="ring8"))
    with pytest.raises(ConfigError, match=r"objective.base: unknown objective 'hing'. Did you mean 'hinge'"):
        ACGAN(base="hing")
    with pytest.raises(ConfigError, match=r"objective.base_params.gp_wieght: unknown parameter.*'gp_weight'"):
        ACGAN(base="wgan-gp", base_params={"gp_wieght": 1.0})
    with pytest.raises(ValueError, match="base must be an adversarial objective, got 'acgan'"):
        ACGAN(base="acgan")


# -- Dirac-GAN (Mescheder, Geiger & Nowozin 2018) ---------------------------------------------------
#
# G produces θ, real data sit at 0, D(x) = ψx. Mescheder et al. write L(θ, ψ) = f(ψθ) + f(0) with
# their D positive on *fake* data; ganforge's logits are positive on *real* data, so their ψ is our
# -ψ. With f(t) = -log(1 + e^{-t}) (f'(t) = σ(-t), f'(0) = 1/2) the field v = (-∂L_G/∂θ, -∂L_D/∂ψ)
# of the losses each player minimizes is
#   minimax:        v = (ψ f'(-θψ), -θ f'(-θψ))   (their eq. 5 after ψ → -ψ)
#   non-saturating: v = (ψ f'(θψ),  -θ f'(-θψ))   (equal to minimax to first order at 0)
#   WGAN (f(t)=t):  v = (ψ, -θ)
# and R1 adds -γψ to ψ's component (∇ₓD = ψ, so γ/2 ‖∇ₓD‖² = γψ²/2).

POINTS = [(0.0, 0.0), (0.5, -0.3), (-1.2, 0.7), (2.0, 1.5), (-0.4, -2.5), (1e-3, 2e-3)]


def f_prime(t: float) -> float:
    return sigmoid(-t)


def dirac_field(obj: Objective, theta: float, psi: float) -> tuple[float, float]:
    th = torch.tensor(theta, requires_grad=True)
    ps = torch.tensor(psi, requires_grad=True)
    d = lambda x, y=None: ps * x  # noqa: E731
    real = torch.zeros(1, 1)
    loss_d = obj.discriminator_loss(d, real, th.detach().reshape(1, 1), None).loss
    (d_psi,) = torch.autograd.grad(loss_d, ps)
    loss_g = obj.generator_loss(d, real, th.reshape(1, 1), None).loss
    (d_theta,) = torch.autograd.grad(loss_g, th)
    return -d_theta.item(), -d_psi.item()


@pytest.mark.parametrize("theta, psi", POINTS)
def test_dirac_gan_fields(theta, psi):
    t = theta * psi
    fields = {
        Minimax(): (psi * f_prime(-t), -theta * f_prime(-t)),
        NonSaturating(): (psi * f_prime(t), -theta * f_prime(-t)),
        WGAN(): (psi, -theta),
        NonSaturating(r1_weight=3.0, r1_every=1): (psi * f_prime(t), -theta * f_prime(-t) - 3.0 * psi),
    }
    for obj, expected in fields.items():
        assert dirac_field(obj, theta, psi) == pytest.approx(expected, abs=1e-12), type(obj).__name__


def test_dirac_gan_wgan_gp_field():
    # x̂ = (1 - α)θ, ∇D(x̂) = ψ: the penalty λ(|ψ| - 1)² pulls ψ toward ±1 whatever α is
    for theta, psi in [(0.5, -0.3), (-1.2, 0.7), (2.0, 1.5)]:
        expected = (psi, -theta - 10.0 * 2 * (abs(psi) - 1) * math.copysign(1, psi))
        assert dirac_field(WGANGP(), theta, psi) == pytest.approx(expected, abs=1e-12)


def jacobian_at_equilibrium(obj: Objective, h: float = 1e-6) -> torch.Tensor:
    """∂v/∂(θ, ψ) at (0, 0) by central differences."""
    cols = []
    for e in [(h, 0.0), (0.0, h)]:
        plus, minus = dirac_field(obj, *e), dirac_field(obj, -e[0], -e[1])
        cols.append([(p - m) / (2 * h) for p, m in zip(plus, minus)])
    return torch.tensor(cols).T


def test_dirac_gan_equilibrium_f_prime_zero_and_eigenvalues():
    # near the equilibrium v ≈ f'(0)(ψ, -θ): a rotation with eigenvalues ±i f'(0), f'(0) = 1/2
    assert dirac_field(NonSaturating(), 1e-4, 0.0)[1] / -1e-4 == pytest.approx(0.5, rel=1e-6)
    for obj, fp0 in [(Minimax(), 0.5), (NonSaturating(), 0.5), (WGAN(), 1.0)]:
        jac = jacobian_at_equilibrium(obj)
        assert torch.allclose(jac, torch.tensor([[0.0, fp0], [-fp0, 0.0]]), atol=1e-6)
        eig = torch.linalg.eigvals(jac)
        assert torch.allclose(eig.real, torch.zeros(2), atol=1e-6)  # purely imaginary: no convergence
        assert sorted(eig.imag.tolist()) == pytest.approx([-fp0, fp0], abs=1e-6)
    # R1 makes the equilibrium attracting: eigenvalues -γ/2 ± sqrt(γ²/4 - f'(0)²)
    eig = torch.linalg.eigvals(jacobian_at_equilibrium(NonSaturating(r1_weight=0.4, r1_every=1)))
    assert (eig.real < 0).all()
    assert eig.real.tolist() == pytest.approx([-0.2, -0.2], abs=1e-6)


# -- discovery --------------------------------------------------------------------------------------


def test_registry_discovers_the_objectives_through_the_entry_point():
    reg = load_registry(warn=False)
    assert set(NAMES) <= set(reg.names("objective"))
    for name in NAMES:
        comp = reg.get("objective", name)
        assert (comp.plugin, comp.distribution) == ("objectives", "ganforge")
        assert comp.description
        assert isinstance(reg.build("objective", {"name": name}), Objective)
    assert [(p.name, p.default) for p in reg.get("objective", "wgan-gp").parameters()] == [
        ("gp_weight", 10.0),
        ("n_critic", 5),
        ("eps_drift", 0.0),
        ("gp_every", 1),
    ]
    assert reg.get("objective", "acgan").injected() == ["info"]
    obj = reg.build("objective", {"name": "wgan-gp", "gp_weight": "5"})  # YAML 1.1 strings become floats
    assert obj.gp_weight == 5.0
    with pytest.raises(ConfigError, match=r"^objective \(objective 'wgan-gp' from .*n_critic must be >= 1"):
        reg.build("objective", {"name": "wgan-gp", "n_critic": 0})


def test_saturation_table_script_uses_the_registered_objectives():
    path = Path(__file__).parents[2] / "scripts" / "saturation_table.py"
    spec = importlib.util.spec_from_file_location("saturation_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for p in (1e-4, 0.1, 0.5):
        assert module.generator_gradient(Minimax(), p)[1] == pytest.approx(p, rel=1e-9)
        assert module.generator_gradient(NonSaturating(), p)[1] == pytest.approx(1 - p, rel=1e-9)
