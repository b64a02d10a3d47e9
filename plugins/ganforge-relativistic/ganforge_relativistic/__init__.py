"""Relativistic pairing GAN (RpGAN, Jolicoeur-Martineau 2018) as a ganforge objective."""

import torch
import torch.nn.functional as F

from ganforge import LossOutput, Objective, adversarial_logits, hookimpl


class Relativistic(Objective):
    """Relativistic pairing GAN: D judges whether real data looks more real than paired fake data.

    D: E softplus(-(D(x_r) - D(x_f)));  G: E softplus(-(D(x_f) - D(x_r))).
    Real and fake batches are paired sample by sample, so they must have the same size.
    """

    def _difference(self, d, real: torch.Tensor, fake: torch.Tensor, y) -> tuple:
        real_logits = adversarial_logits(d(real, y))
        fake_logits = adversarial_logits(d(fake, y))
        logs = {"d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
        return real_logits - fake_logits, logs

    def discriminator_loss(self, d, real, fake, y) -> LossOutput:
        diff, logs = self._difference(d, real, fake, y)
        return LossOutput(F.softplus(-diff).mean(), logs)

    def generator_loss(self, d, real, fake, y) -> LossOutput:
        diff, logs = self._difference(d, real, fake, y)
        return LossOutput(F.softplus(diff).mean(), logs)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_objectives(register):
    register("relativistic", Relativistic, description="Relativistic pairing GAN (RpGAN, Jolicoeur-Martineau 2018)")
