"""The example third-party plugin ganforge-relativistic: its formula and its discovery by entry point."""

import math
from pathlib import Path

import torch

import ganforge_relativistic
from ganforge import Objective
from ganforge.registry.registry import load_registry
from ganforge_relativistic import Relativistic


def softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def test_relativistic_pairing_losses_and_gradients():
    real = [0.3, -1.0, 2.0]
    fake = [-0.7, 0.5, 1.0]
    lr = torch.tensor(real, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    lf = torch.tensor(fake, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    identity = lambda x, y=None: x  # noqa: E731 - the sample is its own logit
    obj = Relativistic()
    d_out = obj.discriminator_loss(identity, lr, lf, None)
    g_out = obj.generator_loss(identity, lr, lf, None)
    n, diffs = len(real), [r - f for r, f in zip(real, fake)]
    # D: E softplus(-(D(x_r) - D(x_f)));  G: E softplus(-(D(x_f) - D(x_r)))
    assert math.isclose(d_out.loss.item(), sum(softplus(-t) for t in diffs) / n, rel_tol=1e-12)
    assert math.isclose(g_out.loss.item(), sum(softplus(t) for t in diffs) / n, rel_tol=1e-12)
    # dG/dD(x_f) = -σ(D(x_r) - D(x_f)) / n: strong while the real sample still outranks its fake pair
    (g_fake,) = torch.autograd.grad(g_out.loss, lf)
    expected = [-1 / (1 + math.exp(-t)) / n for t in diffs]
    assert torch.allclose(g_fake.flatten(), torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert math.isclose(d_out.logs["d_real"].item(), sum(real) / n, rel_tol=1e-12)
    assert math.isclose(d_out.logs["d_fake"].item(), sum(fake) / n, rel_tol=1e-12)


def test_discovered_through_its_entry_point():
    reg = load_registry(warn=False)
    assert "relativistic" in reg.names("objective")
    comp = reg.get("objective", "relativistic")
    assert (comp.plugin, comp.distribution) == ("relativistic", "ganforge-relativistic")
    assert comp.parameters() == []
    assert isinstance(reg.build("objective", {"name": "relativistic"}), Objective)
    assert any(p.distribution == "ganforge-relativistic" for p in reg.plugins)


def test_disabled_by_name():
    reg = load_registry(warn=False, disabled=["relativistic"])
    assert "relativistic" not in reg.names("objective")


def test_docs_show_the_plugin_verbatim():
    doc = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    block = doc.split("<!-- BEGIN ganforge_relativistic/__init__.py", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    source = Path(ganforge_relativistic.__file__).read_text(encoding="utf-8")
    assert block == source, "docs/plugins.md must show plugins/ganforge-relativistic/ganforge_relativistic/__init__.py verbatim"
    assert len(source.splitlines()) < 40
