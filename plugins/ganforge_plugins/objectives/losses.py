"""The objectives plugin: ``minimax``, ``non-saturating``, ``hinge``, ``lsgan``, ``wgan``, ``wgan-gp``, ``acgan``,
``unrolled``, ``constrained``.

One module per family (``real_fake.py``, ``wasserstein.py``, ``acgan.py``, shared parts in
``common.py``); the formulas and the conventions they share are in docs/objectives.md.
"""

from typing import Callable

from ganforge import Objective, Register, hookimpl
from ganforge_plugins.objectives.acgan import ACGAN
from ganforge_plugins.objectives.constrained import Constrained
from ganforge_plugins.objectives.real_fake import Hinge, LeastSquares, Minimax, NonSaturating
from ganforge_plugins.objectives.unrolled import Unrolled
from ganforge_plugins.objectives.wasserstein import WGAN, WGANGP

__all__ = ["ACGAN", "Constrained", "WGAN", "WGANGP", "Hinge", "LeastSquares", "Minimax", "NonSaturating", "OBJECTIVES", "Unrolled"]


OBJECTIVES: dict[str, tuple[Callable[..., Objective], str]] = {
    "minimax": (Minimax, "Saturating minimax GAN (Goodfellow 2014): G minimizes E log(1 - D(G(z)))"),
    "non-saturating": (NonSaturating, "Non-saturating GAN: G minimizes -E log D(G(z))"),
    "wgan": (WGAN, "Wasserstein GAN with weight clipping (Arjovsky 2017)"),
    "wgan-gp": (WGANGP, "Wasserstein GAN with gradient penalty (Gulrajani 2017)"),
    "hinge": (Hinge, "Hinge loss (Lim & Ye 2017; Miyato 2018)"),
    "lsgan": (LeastSquares, "Least-squares GAN (Mao 2017), targets 0/1/1"),
    "acgan": (ACGAN, "Auxiliary-classifier GAN (Odena 2017) on top of any adversarial objective"),
    "unrolled": (Unrolled, "Unrolled GAN (Metz 2017): G's loss through k differentiable D updates, any base objective"),
    "constrained": (Constrained, "Constrained GAN: any base objective plus weighted constraint penalties on G's samples"),
}


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_objectives(register: Register) -> None:
    for name, (factory, description) in OBJECTIVES.items():
        register(name, factory, description=description)
