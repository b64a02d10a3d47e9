"""Print the generator's gradient under the saturating and non-saturating losses as a markdown table.

Usage: ``.venv/bin/python scripts/saturation_table.py``

For each value of D(G(z)) = σ(l) the script builds the registered ``minimax`` and
``non-saturating`` objectives through the plugin registry (not hand-written formulas), feeds
them a discriminator whose output is the logit ``l`` of the sample, and back-propagates the
generator loss to ``l``. Through any fixed discriminator the gradient w.r.t. the sample is
``∂L/∂l · ∇ₓl``: the same factor times the same vector for both losses, so the ratio in the
last column holds for the sample gradient too.
"""

import math

import torch

from ganforge.registry.registry import load_registry

PROBABILITIES = [1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.5]


def generator_gradient(objective, p: float) -> tuple[float, float]:
    """Generator loss and ``|∂L_G/∂l|`` at ``D(G(z)) = p`` for a single sample."""
    logit = torch.tensor([[math.log(p / (1 - p))]], dtype=torch.float64, requires_grad=True)
    out = objective.generator_loss(lambda x, y=None: x, None, logit, None)
    (grad,) = torch.autograd.grad(out.loss, logit)
    return out.loss.item(), abs(grad.item())


def main() -> None:
    registry = load_registry(warn=False)
    minimax = registry.build("objective", {"name": "minimax"})
    non_saturating = registry.build("objective", {"name": "non-saturating"})
    print("| D(G(z)) | logit l | minimax G loss log(1 − D) | minimax \\|∂L/∂l\\| | "
          "non-saturating G loss −log D | non-saturating \\|∂L/∂l\\| | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for p in PROBABILITIES:
        loss_mm, grad_mm = generator_gradient(minimax, p)
        loss_ns, grad_ns = generator_gradient(non_saturating, p)
        print(
            f"| {p:g} | {math.log(p / (1 - p)):.2f} | {loss_mm:.4g} | {grad_mm:.4g} | "
            f"{loss_ns:.4g} | {grad_ns:.4g} | {grad_ns / grad_mm:.4g}× |"
        )


if __name__ == "__main__":
    main()
