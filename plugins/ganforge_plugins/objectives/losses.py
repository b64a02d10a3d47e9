"""First-party GAN objectives: minimax, non-saturating, WGAN, WGAN-GP, hinge, LSGAN, AC-GAN.

Conventions shared by every objective here:

* ``l = D(x)`` is the discriminator's raw output (a logit for the logistic losses); for the
  logistic losses ``D(x)`` in the papers' formulas is ``σ(l)``.
* Logistic losses use the stable forms ``log σ(l) = −softplus(−l)`` and
  ``log(1 − σ(l)) = −softplus(l)``, so no probability is ever rounded to 0 or 1.
* Every loss is a mean over the batch; the logs are detached scalars (``d_real`` and
  ``d_fake`` are the mean raw outputs on real and fake samples).
* Penalties differentiate through ``∇ₓD`` with ``torch.autograd.grad(create_graph=True)``
  followed by the engine's one ordinary backward (DDP does not support
  ``backward(create_graph=True)``, pytorch#63812). They run under ``torch.enable_grad()``
  so an evaluation-time call in ``no_grad`` still computes them.
* Lazy regularization (Karras et al. 2020, StyleGAN2 §B): with ``r1_every``/``gp_every`` = k > 1
  the penalty leaves ``discriminator_loss`` (Dmain) and becomes ``discriminator_regularization``
  (Dreg), which the engine adds to every k-th discriminator step with the weight multiplied by k:
  the same penalty on average at 1/k of its double-backward cost.
"""

from typing import Annotated, Any, Callable, Optional

import torch
import torch.nn.functional as F

from ganforge import (
    ComponentRef,
GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


    DataInfo,
    DiscriminatorFn,
    LossOutput,
    Objective,
    Register,
    adversarial_logits,
    build_component,
    hookimpl,
)

Tensor = torch.Tensor


# -- helpers ----------------------------------------------------------------------------------------


def _check_nonnegative(name: str, value: float, hint: str) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}; {hint}")


def _check_every(name: str, value: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (discriminator steps between penalty evaluations), got "
                         f"{value!r}; {hint}")


def _check_n_critic(n_critic: int) -> None:
    if n_critic < 1:
        raise ValueError(
            f"n_critic must be >= 1 (critic steps per generator step), got {n_critic!r}; "
            "use 5 as in the WGAN papers"
        )


def _upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 to float32 (squares and means of half values lose too much); wider dtypes stay."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _logs(real_logits: Optional[Tensor] = None, fake_logits: Optional[Tensor] = None, **extra: Tensor) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    if real_logits is not None:
        out["d_real"] = _upcast(real_logits.detach()).mean()
    if fake_logits is not None:
        out["d_fake"] = _upcast(fake_logits.detach()).mean()
    out.update({k: _upcast(v.detach()) for k, v in extra.items()})
    return out


def _logits_and_r1(d: DiscriminatorFn, real: Tensor, y: Optional[Tensor], r1_weight: float) -> tuple[Tensor, Optional[Tensor]]:
    """D's logits on ``real`` and, when ``r1_weight > 0``, the R1 term ``E‖∇ₓD(x)‖²`` (unweighted).

    The penalty reuses the logits of the adversarial term, so R1 costs no extra forward pass.
    """
    if r1_weight <= 0:
        return adversarial_logits(d(real, y)), None
    with torch.enable_grad():
        x = real.detach().requires_grad_(True)
        logits = adversarial_logits(d(x, y))
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return logits, _upcast(grad).pow(2).flatten(1).sum(1).mean()


# -- logistic family with optional R1 --------------------------------------------------------------


class _RealFakeObjective(Objective):
    """Objectives whose D loss is ``E a(D(x)) + E b(D(G(z)))`` plus an optional R1 penalty.

    R1 (Mescheder et al. 2018): ``γ/2 · E_real ‖∇ₓD(x)‖²``, ``γ = r1_weight``; with
    ``r1_every = k > 1`` it is lazy: ``k · γ/2 · E‖∇ₓD(x)‖²`` every k-th discriminator step (Dreg).
    """

    name = ""

    def __init__(self, r1_weight: float = 0.0, r1_every: int = 16) -> None:
        _check_nonnegative(
            "r1_weight", r1_weight, "use 0 to disable R1, or a positive γ (StyleGAN2 uses 10 at 1024 px)"
        )
        _check_every("r1_every", r1_every, "use 1 for R1 on every step or 16 (StyleGAN2's lazy R1)")
        self.r1_weight = float(r1_weight)
        self.r1_every = int(r1_every)
        # an instance attribute, so protocol() records it and the engine sees it per instance
        self.needs_double_backward = self.r1_weight > 0

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.r1_every if self.r1_weight > 0 else 1

    def real_term(self, real_logits: Tensor) -> Tensor:
        """Per-sample D loss on real samples."""
        raise NotImplementedError

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        """Per-sample D loss on generated samples."""
        raise NotImplementedError

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        """Per-sample G loss."""
        raise NotImplementedError

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, r1 = _logits_and_r1(d, real, y, self.r1_weight if self.reg_every == 1 else 0.0)
        fake_logits = adversarial_logits(d(fake, y))
        adv = self.real_term(real_logits).mean() + self.fake_term(fake_logits).mean()
        extra = {"d_loss_adv": adv}
        loss = adv
        if r1 is not None:
            loss = loss + 0.5 * self.r1_weight * r1
            extra["r1"] = r1
        return LossOutput(loss, _logs(real_logits, fake_logits, **extra))

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        """Dreg, lazy R1: ``k · γ/2 · E‖∇ₓD(x)‖²`` with ``k = r1_every`` (its own forward on ``real``)."""
        _, r1 = _logits_and_r1(d, real, y, self.r1_weight)
        assert r1 is not None
        return LossOutput(self.r1_every * 0.5 * self.r1_weight * r1, _logs(r1=r1))

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        fake_logits = adversarial_logits(d(fake, y))
        return LossOutput(self.generator_term(fake_logits).mean(), _logs(fake_logits=fake_logits))


class Minimax(_RealFakeObjective):
    """The saturating minimax game of Goodfellow et al. (2014), exactly as written.

    ``min_G max_D V(D, G) = E_x log D(x) + E_z log(1 − D(G(z)))`` with ``D = σ(l)``:

    * D minimizes ``−V = E softplus(−l_real) + E softplus(l_fake)``;
    * G minimizes ``E log(1 − D(G(z))) = −E softplus(l_fake)``; ``∂/∂l = −σ(l)``, which
      vanishes when D confidently rejects the samples (``σ(l) → 0``): the saturation problem.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "minimax"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return F.softplus(-real_logits)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return -F.softplus(fake_logits)


class NonSaturating(Minimax):
    """Non-saturating GAN (Goodfellow et al. 2014, Sec. 3): G maximizes ``E log D(G(z))``.

    * D: as in ``minimax``, ``E softplus(−l_real) + E softplus(l_fake)``;
    * G minimizes ``−E log D(G(z)) = E softplus(−l_fake)``; ``∂/∂l = −(1 − σ(l))``, largest
      where the samples are worst.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "non-saturating"

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits)


class Hinge(_RealFakeObjective):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018).

    * D: ``E relu(1 − D(x)) + E relu(1 + D(G(z)))``;
    * G: ``−E D(G(z))``.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "hinge"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return F.relu(1.0 - real_logits)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 + fake_logits)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits


class LeastSquares(_RealFakeObjective):
    """Least-squares GAN (Mao et al. 2017) with targets a = 0 (fake), b = 1 (real), c = 1.

    * D: ``½ E (D(x) − 1)² + ½ E D(G(z))²``;
    * G: ``½ E (D(G(z)) − 1)²``.

    Args:
        r1_weight: γ of the R1 penalty ``γ/2 E‖∇ₓD(x)‖²`` on real data (0 disables it).
        r1_every: Evaluate R1 every this many discriminator steps, weighted by it (lazy R1 as
            in StyleGAN2; 1: every step).
    """

    name = "lsgan"

    def real_term(self, real_logits: Tensor) -> Tensor:
        return 0.5 * (real_logits - 1.0).pow(2)

    def fake_term(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * fake_logits.pow(2)

    def generator_term(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - 1.0).pow(2)


# -- Wasserstein ------------------------------------------------------------------------------------


class WGAN(Objective):
    """Wasserstein GAN with weight clipping (Arjovsky et al. 2017).

    * critic: ``E D(G(z)) − E D(x)`` (minimizing it maximizes the Wasserstein estimate
      ``E D(x) − E D(G(z))``, logged as ``wasserstein``);
    * G: ``−E D(G(z))``.

    The engine clamps every critic parameter to ``[−weight_clip, weight_clip]`` after each
    critic step, a crude way to keep the critic Lipschitz.

    Args:
        weight_clip: Clamp bound c for the critic's parameters (``null`` disables clipping,
            e.g. for a spectrally normalized critic).
        n_critic: Critic steps per generator step.
    """

    name = "wgan"

    def __init__(self, weight_clip: Optional[float] = 0.01, n_critic: int = 5) -> None:
        if weight_clip is not None and not weight_clip > 0:
            raise ValueError(
                f"weight_clip must be > 0, got {weight_clip!r}; "
                "use 0.01 (Arjovsky et al.) or null to disable clipping"
            )
        _check_n_critic(n_critic)
        self.weight_clip = None if weight_clip is None else float(weight_clip)
        self.n_critic = int(n_critic)

    def _critic(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        real_logits = adversarial_logits(d(real, y))
        fake_logits = adversarial_logits(d(fake, y))
        return real_logits, fake_logits, real_logits.mean() - fake_logits.mean()

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, fake_logits, w = self._critic(d, real, fake, y)
        return LossOutput(-w, _logs(real_logits, fake_logits, wasserstein=w))

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        fake_logits = adversarial_logits(d(fake, y))
        return LossOutput(-fake_logits.mean(), _logs(fake_logits=fake_logits))


class WGANGP(WGAN):
    """WGAN with gradient penalty (Gulrajani et al. 2017), optional drift (Karras et al. 2018).

    critic: ``E D(G(z)) − E D(x) + λ E (‖∇D(x̂)‖₂ − 1)² + ε E D(x)²`` with
    ``x̂ = α x + (1 − α) G(z)``, ``α ~ U[0, 1]`` per sample; G: ``−E D(G(z))``.

    ``α`` comes from ``torch.rand`` on the device of ``real``: the engine seeds each rank
    differently, so ranks draw different interpolates.

    Args:
        gp_weight: λ, the weight of the gradient penalty.
        n_critic: Critic steps per generator step.
        eps_drift: ε, the weight of the drift term that keeps critic outputs near 0
            (Karras et al. use 0.001).
        gp_every: Evaluate the gradient penalty every this many critic steps, weighted by it
            (lazy; 1: every step, as in the paper).
    """

    name = "wgan-gp"
    needs_double_backward = True

    def __init__(self, gp_weight: float = 10.0, n_critic: int = 5, eps_drift: float = 0.0, gp_every: int = 1) -> None:
        super().__init__(weight_clip=None, n_critic=n_critic)
        _check_nonnegative("gp_weight", gp_weight, "use 10.0 (Gulrajani et al.)")
        _check_nonnegative("eps_drift", eps_drift, "use 0 to disable it or 0.001 (Karras et al.)")
        _check_every("gp_every", gp_every, "use 1 (Gulrajani et al.) or e.g. 4 for a lazy penalty")
        self.gp_weight = float(gp_weight)
        self.eps_drift = float(eps_drift)
        self.gp_every = int(gp_every)

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.gp_every

    def gradient_penalty(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``E (‖∇D(x̂)‖₂ − 1)²`` (unweighted) and the critic's outputs on the interpolates."""
        if real.shape != fake.shape:
            raise ValueError(
                f"objective '{self.name}' interpolates real and fake samples pairwise, but got real of shape "
                f"{tuple(real.shape)} and fake of shape {tuple(fake.shape)}; generate one fake sample per real sample"
            )
        alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        with torch.enable_grad():
            x_hat = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
            hat_logits = adversarial_logits(d(x_hat, y))
            (grad,) = torch.autograd.grad(hat_logits.sum(), x_hat, create_graph=True)
            norm = torch.linalg.vector_norm(_upcast(grad).flatten(1), dim=1)
            return (norm - 1.0).pow(2).mean(), hat_logits

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        real_logits, fake_logits, w = self._critic(d, real, fake, y)
        loss = -w
        extra = {"wasserstein": w}
        if self.gp_every == 1:
            gp, hat_logits = self.gradient_penalty(d, real, fake, y)
            # 0 * logits keeps every critic parameter in the graph of the one backward (DDP)
            loss = loss + self.gp_weight * gp + 0.0 * hat_logits.sum()
            extra["gp"] = gp
        if self.eps_drift > 0:
            drift = _upcast(real_logits).pow(2).mean()
            loss = loss + self.eps_drift * drift
            extra["drift"] = drift
        return LossOutput(loss, _logs(real_logits, fake_logits, **extra))

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        """Dreg, lazy gradient penalty: ``k · λ · E(‖∇D(x̂)‖₂ − 1)²`` with ``k = gp_every``."""
        gp, _ = self.gradient_penalty(d, real, fake, y)
        return LossOutput(self.gp_every * self.gp_weight * gp, _logs(gp=gp))


# -- auxiliary classifier ---------------------------------------------------------------------------


class _AuxRecorder:
    """Wraps ``d`` and remembers the auxiliary outputs of the calls on ``real`` and ``fake``.

    The base objective calls ``d`` itself; recording its outputs lets AC-GAN reuse them
    instead of a second forward pass (which would also update BatchNorm statistics twice).
    A call is matched to ``real``/``fake`` by storage, since penalties call ``d`` on
    ``real.detach()``, a new tensor over the same memory.
    """

    def __init__(self, d: DiscriminatorFn, targets: dict[str, Tensor]) -> None:
        self.d = d
        self.targets = targets
        self.aux: dict[str, Any] = {}

    def __call__(self, x: Tensor, y: Optional[Tensor]) -> Any:
        out = self.d(x, y)
        for key, t in self.targets.items():
            if key not in self.aux and x.shape == t.shape and x.data_ptr() == t.data_ptr():
                self.aux[key] = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
        return out

    def class_logits(self, key: str, y: Optional[Tensor]) -> Tensor:
        aux = self.aux.get(key)
        if key not in self.aux:  # the base objective did not look at this batch: look ourselves
            out = self.d(self.targets[key], y)
            aux = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
        if aux is None:
            raise ValueError(
                "objective 'acgan' needs a discriminator that returns (logits, class_logits), but it returned "
                "only logits; use a discriminator with an auxiliary classifier head (one that returns a tuple "
                "whose second element has shape (N, num_classes))"
            )
        return aux


class ACGAN(Objective):
    """Auxiliary-classifier GAN (Odena et al. 2017) on top of any adversarial objective.

    The discriminator returns ``(logits, class_logits)``. With ``CE`` the cross-entropy
    against the class labels ``y`` and ``w = class_weight``:

    * D: ``base D loss + w · (CE(class_logits(x), y) + CE(class_logits(G(z, y)), y))``;
    * G: ``base G loss + w · CE(class_logits(G(z, y)), y)``.

    Args:
        base: The registered adversarial objective to add the classifier to.
        class_weight: w, the weight of the classification terms.
        base_params: Parameters of the base objective, e.g. ``{gp_weight: 5.0}``.
        info: Injected by the engine: the dataset must have class labels.
    """

    name = "acgan"

    def __init__(
        self,
        base: Annotated[str, ComponentRef("objective", params="base_params")] = "non-saturating",
        class_weight: float = 1.0,
        base_params: Optional[dict[str, Any]] = None,
        info: Optional[DataInfo] = None,
    ) -> None:
        _check_nonnegative("class_weight", class_weight, "use 1.0 (Odena et al.)")
        if info is not None and info.num_classes <= 0:
            raise ValueError(
                f"objective 'acgan' needs class labels, but dataset '{info.name}' has num_classes={info.num_classes} "
                f"(cond_dim={info.cond_dim}); use a class-labelled dataset, or an unconditional objective such as "
                "'non-saturating'"
            )
        if base == self.name:
            raise ValueError("base must be an adversarial objective, got 'acgan'; use e.g. 'non-saturating'")
        self.base = base
        self.class_weight = float(class_weight)
        self.base_params = dict(base_params or {})
        # through the registry, so a third-party objective can be the base too
        self.inner: Objective = build_component(
            "objective", base, self.base_params, name_key="objective.base", params_key="objective.base_params"
        )
        self.n_critic = self.inner.n_critic
        self.needs_double_backward = self.inner.needs_double_backward
        self.weight_clip = self.inner.weight_clip

    @property
    def reg_every(self) -> int:  # type: ignore[override]
        return self.inner.reg_every

    def discriminator_regularization(self, d: DiscriminatorFn, real: Tensor, fake: Tensor,
                                     y: Optional[Tensor]) -> LossOutput:
        """Dreg of the base objective (the class terms are not regularizers)."""
        return self.inner.discriminator_regularization(d, real, fake, y)

    @staticmethod
    def _check_labels(y: Optional[Tensor]) -> Tensor:
        if y is None:
            raise ValueError(
                "objective 'acgan' needs class labels y, got None; use a class-labelled dataset "
                "(its info.num_classes > 0)"
            )
        if y.is_floating_point():
            raise ValueError(
                f"objective 'acgan' needs integer class labels y, got a {y.dtype} tensor of shape {tuple(y.shape)} "
                "(continuous conditions); use a class-labelled dataset or an objective without a classifier"
            )
        return y.reshape(-1).long()

    def _ce(self, class_logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if class_logits.dim() != 2 or class_logits.shape[0] != labels.shape[0]:
            raise ValueError(
                f"objective 'acgan': class_logits must have shape (N, num_classes) with N={labels.shape[0]}, got "
                f"{tuple(class_logits.shape)}; check the discriminator's auxiliary head"
            )
        ce = F.cross_entropy(_upcast(class_logits), labels)
        acc = (class_logits.detach().argmax(1) == labels).float().mean()
        return ce, acc

    def discriminator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        labels = self._check_labels(y)
        rec = _AuxRecorder(d, {"real": real, "fake": fake})
        base = self.inner.discriminator_loss(rec, real, fake, y)
        ce_real, acc_real = self._ce(rec.class_logits("real", y), labels)
        ce_fake, acc_fake = self._ce(rec.class_logits("fake", y), labels)
        loss = base.loss + self.class_weight * (ce_real + ce_fake)
        logs = dict(base.logs, cls_real=ce_real.detach(), cls_fake=ce_fake.detach(), acc_real=acc_real, acc_fake=acc_fake)
        return LossOutput(loss, logs)

    def generator_loss(self, d: DiscriminatorFn, real: Tensor, fake: Tensor, y: Optional[Tensor]) -> LossOutput:
        labels = self._check_labels(y)
        rec = _AuxRecorder(d, {"fake": fake})
        base = self.inner.generator_loss(rec, real, fake, y)
        ce_fake, acc_fake = self._ce(rec.class_logits("fake", y), labels)
        logs = dict(base.logs, cls_fake=ce_fake.detach(), acc_fake=acc_fake)
        return LossOutput(base.loss + self.class_weight * ce_fake, logs)

    def protocol(self) -> dict[str, Any]:
        return {"base": self.base, "class_weight": self.class_weight, "base_protocol": self.inner.protocol()}


# -- registration -----------------------------------------------------------------------------------

OBJECTIVES: dict[str, tuple[Callable[..., Objective], str]] = {
    "minimax": (Minimax, "Saturating minimax GAN (Goodfellow 2014): G minimizes E log(1 - D(G(z)))"),
    "non-saturating": (NonSaturating, "Non-saturating GAN: G minimizes -E log D(G(z))"),
    "wgan": (WGAN, "Wasserstein GAN with weight clipping (Arjovsky 2017)"),
    "wgan-gp": (WGANGP, "Wasserstein GAN with gradient penalty (Gulrajani 2017)"),
    "hinge": (Hinge, "Hinge loss (Lim & Ye 2017; Miyato 2018)"),
    "lsgan": (LeastSquares, "Least-squares GAN (Mao 2017), targets 0/1/1"),
    "acgan": (ACGAN, "Auxiliary-classifier GAN (Odena 2017) on top of any adversarial objective"),
}


@hookimpl
def ganforge_register_objectives(register: Register) -> None:
    for name, (factory, description) in OBJECTIVES.items():
        register(name, factory, description=description)
