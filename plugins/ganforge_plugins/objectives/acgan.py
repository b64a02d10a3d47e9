"""AC-GAN (Odena et al. 2017): an auxiliary classifier on top of any registered adversarial objective."""

from typing import Annotated, Any, Optional

import torch
import torch.nn.functional as F

from ganforge import ComponentRef, DataInfo, DiscriminatorFn, LossOutput, Objective, build_component
from ganforge_plugins.objectives.common import check_nonnegative, upcast

Tensor = torch.Tensor


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

    With class labels and continuous conditions together (``y`` float ``(N, 1 + cond_dim)``,
    :meth:`ganforge.DataInfo.split_conditions`), the classifier predicts the class part, column 0;
    the continuous conditions reach D only through its own conditioning (e.g. projection).

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
        check_nonnegative("class_weight", class_weight, "use 1.0 (Odena et al.)")
        if info is not None and info.num_classes <= 0:
            raise ValueError(
                f"objective 'acgan' needs class labels, but dataset '{info.name}' has num_classes={info.num_classes} "
                f"(cond_dim={info.cond_dim}); use a class-labelled dataset, or an unconditional objective such as "
                "'non-saturating'"
            )
        if base == self.name:
            raise ValueError("base must be an adversarial objective, got 'acgan'; use e.g. 'non-saturating'")
        if base == "constrained":  # its penalties, logs and calibration belong outside any other wrapper
            raise ValueError("base 'constrained' goes outside acgan, not inside: write objective={name: constrained, "
                             "base: acgan, base_params: {...}, constraints: [...]}")
        self.info = info
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

    def _check_labels(self, y: Optional[Tensor]) -> Tensor:
        if y is None:
            raise ValueError(
                "objective 'acgan' needs class labels y, got None; use a class-labelled dataset "
                "(its info.num_classes > 0)"
            )
        info = self.info
        if info is not None and info.num_classes > 0 and info.cond_dim > 0:
            # No value check of the class column: a GPU sync per step; cross_entropy raises out of range.
            return info.split_conditions(y, check=False)[0]
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
        ce = F.cross_entropy(upcast(class_logits), labels)
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
