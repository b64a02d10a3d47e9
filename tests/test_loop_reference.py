"""The loop's numbers do not change under refactoring: short ring8 runs against recorded values.

The reference values were recorded once (tests/loop_reference.json) from the loop as it stood before the phases, the EMA and
the learning-rate schedule were split out of ``GANModule.training_step`` (issue 8, part 4), with
``train.cpu_threads=1``. Each case runs 20 generator steps and compares the logged losses of every
step and a digest of the final weights (G, D and the EMA of G) to 1e-6. Regenerate (only when a
change of the numbers is intended, and say why in the commit):

    .venv/bin/python tests/test_loop_reference.py tests/loop_reference.json
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

BASE = [
    "generator.width=32", "generator.depth=2", "discriminator.width=32", "discriminator.depth=2",
    "dataset.num_samples=2000", "train.batch_size=64", "train.max_steps=20", "train.log_every_n_steps=1",
    "metrics.list=[]", "logger=csv", "train.cpu_threads=1", "train.ema_halflife_images=500",
    "train.checkpoint_every_n_steps=1000",
]

# Every branch of the iteration: n_critic > 1 with lazy R1 (Dreg), the linear lr decay, gradient
# clipping, the EMA with ramp-up; weight clipping (WGAN); a gradient penalty with 5 critic steps.
CASES = {
    "hinge-ema": ["objective.name=hinge", "train.ema_rampup=0.05"],
    "ns-lazy-r1-decay-clip": ["objective.name=non-saturating", "objective.r1_weight=0.1", "objective.r1_every=4",
                              "train.n_critic=2", "train.lr_decay=linear", "train.lr_decay_start=0.25",
                              "train.grad_clip=1.0"],
    "wgan-clip": ["objective.name=wgan"],
    "wgan-gp": ["objective.name=wgan-gp"],
}

REFERENCE_FILE = Path(__file__).with_name("loop_reference.json")


def trace(registry, root: Path, case: str) -> dict[str, list[float]]:
    """Per-step d_loss and g_loss from metrics.csv, and sums of the final parameters per network."""
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    cfg = load_config(None, BASE + CASES[case] + [f"root_dir={root}", f"name={case}"], registry)
    out = fit(cfg, progress=False, registry=registry)
    rows = [r for r in csv.DictReader(open(out["run_dir"] / "metrics.csv")) if r.get("d_loss")]
    m = out["module"]
    ema = getattr(m, "generator_ema", None)

    def digest(net: torch.nn.Module) -> list[float]:
        return [float(p.detach().double().sum()) for p in net.parameters()]

    return {"d_loss": [float(r["d_loss"]) for r in rows], "g_loss": [float(r["g_loss"]) for r in rows],
            "generator": digest(m.generator), "discriminator": digest(m.discriminator),
            "generator_ema": digest(ema) if ema is not None else []}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loop_reproduces_the_recorded_reference(registry, tmp_path, case):
    got, want = trace(registry, tmp_path / "runs", case), json.loads(REFERENCE_FILE.read_text())[case]
    assert len(got["d_loss"]) == 20 and want["generator_ema"], case
    for key, values in want.items():
        assert got[key] == pytest.approx(values, rel=1e-6, abs=1e-6), (case, key)


if __name__ == "__main__":  # record the reference: writes JSON to argv[1]
    import os
    import tempfile

    os.environ.setdefault("GANFORGE_PROGRESS", "0")
    from ganforge.registry.registry import get_registry

    with tempfile.TemporaryDirectory() as tmp:
        recorded = {c: trace(get_registry(), Path(tmp), c) for c in sorted(CASES)}
    Path(sys.argv[1]).write_text(json.dumps(recorded))
