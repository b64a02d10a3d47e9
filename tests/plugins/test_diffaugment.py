"""DiffAugment (Zhao et al. 2020): each op against a hand computation, p = 0 is the identity, gradients
through the augmentation, eval mode untouched, the wrapper's errors, a 100-image digits run, a bit-exact
resume and two ranks that agree bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge import DataInfo
from ganforge.registry.errors import ConfigError
from ganforge.run.config import load_config
from ganforge.run.runner import fit
from ganforge_plugins.networks.diffaugment import (
    DiffAugmentDiscriminator,
    augment,
    brightness,
    contrast,
    cutout,
    diffaugment_discriminator,
    parse_policy,
    saturation,
    translate,
)

pytestmark = pytest.mark.timeout(600)

IMG = DataInfo(sample_shape=(1, 8, 8), kind="image", name="test-images")


# -- the ops against hand computations -----------------------------------------------------------------


def test_translation_moves_pixels_by_the_shift_and_fills_zeros() -> None:
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)  # rows 1..4, 5..8, 9..12, 13..16
    out = translate(x, torch.tensor([1]), torch.tensor([-2]))  # one down, two left
    expected = torch.tensor([[0.0, 0, 0, 0], [3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0]])
    assert torch.equal(out[0, 0], expected)
    both = torch.cat([x, 2 * x])
    out2 = translate(both, torch.tensor([0, -1]), torch.tensor([0, 1]))  # per-sample shifts
    assert torch.equal(out2[0], x[0])
    assert torch.equal(out2[1, 0], torch.tensor([[0.0, 10, 12, 14], [0, 18, 20, 22], [0, 26, 28, 30], [0, 0, 0, 0]]))


def test_cutout_zeroes_a_square_of_the_given_side_clipped_at_the_border() -> None:
    x = torch.ones(3, 2, 8, 8)
    out = cutout(x, torch.tensor([4, 0, 5]), torch.tensor([4, 0, 2]), torch.tensor([4, 4, 0]))
    # centre (4, 4), side 4: rows/cols 2..5 → 16 pixels per channel
    assert torch.equal(out[0, :, 2:6, 2:6], torch.zeros(2, 4, 4)) and out[0].sum() == 2 * (64 - 16)
    # centre (0, 0), side 4: rows/cols -2..1, clipped to 0..1 → 4 pixels
    assert torch.equal(out[1, :, :2, :2], torch.zeros(2, 2, 2)) and out[1].sum() == 2 * (64 - 4)
    assert torch.equal(out[2], x[2])  # side 0: untouched


def test_colour_ops_follow_their_formulas() -> None:
    x = torch.tensor([[[[0.2, -0.4]], [[0.6, 0.0]], [[-1.0, 0.4]]]])  # (1, 3, 1, 2)
    assert torch.allclose(brightness(x, torch.tensor([0.3])), x + 0.3)
    m = torch.tensor([(0.2 + 0.6 - 1.0) / 3, (-0.4 + 0.0 + 0.4) / 3])  # per-pixel channel mean
    s = saturation(x, torch.tensor([1.5]))
    assert torch.allclose(s[0, :, 0, :], m + 1.5 * (x[0, :, 0, :] - m))
    mean = x.mean()
    assert torch.allclose(contrast(x, torch.tensor([0.5])), mean + 0.5 * (x - mean))
    one = torch.randn(2, 1, 4, 4)
    assert torch.allclose(saturation(one, torch.tensor([0.0, 2.0])), one)  # one channel: no saturation
    assert torch.allclose(contrast(x, torch.tensor([1.0])), x) and torch.equal(brightness(x, torch.zeros(1)), x)


def test_drawn_parameters_stay_in_the_papers_ranges() -> None:
    torch.manual_seed(0)
    x = torch.zeros(4000, 1, 16, 16)
    moved = augment(x + 1.0, ("translation",))  # a shift of up to round(16/8) = 2 px leaves a zero border
    zero_rows = (moved[:, 0].sum(2) == 0).sum(1)
    assert zero_rows.max() == 2 and set(zero_rows.tolist()) == {0, 1, 2}
    cut = augment(x + 1.0, ("cutout",))
    holes = (cut == 0).flatten(1).sum(1)
    assert holes.max() == 64 and holes.min() >= 16  # side 8, clipped to at least a quarter at a corner
    bright = augment(x, ("color",))  # zero images: saturation and contrast keep 0 + b = b
    b = bright.flatten(1)[:, 0]
    assert b.min() >= -0.5 and b.max() < 0.5 and b.std() > 0.25  # uniform on [-0.5, 0.5]: std 0.289


def test_p_zero_is_the_identity_and_p_is_a_per_sample_probability() -> None:
    torch.manual_seed(1)
    x = torch.randn(256, 3, 8, 8)
    assert torch.equal(augment(x, ("color", "translation", "cutout"), p=0.0), x)
    mixed = augment(x, ("color", "translation", "cutout"), p=0.5)
    kept = (mixed == x).flatten(1).all(1).float().mean().item()  # all three ops skipped: 1/8
    assert 0.06 < kept < 0.2
    out = augment(x, ("cutout",), p=0.25)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.15 < changed < 0.35


def test_gradients_flow_through_the_augmentation_and_match_finite_differences() -> None:
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)

    def f(inp: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)  # the same draw at every evaluation
        return augment(inp, ("color", "translation", "cutout"), translation=0.25, cutout_ratio=0.5)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)
    (g,) = torch.autograd.grad(f(x).square().sum(), x)
    assert g.abs().sum() > 0


# -- the wrapper ---------------------------------------------------------------------------------------


def test_wrapper_augments_in_training_mode_only_and_passes_y_through() -> None:
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x, y=None):
            seen.append((x.clone(), y))
            return x.flatten(1).sum(1), "aux"

    d = DiffAugmentDiscriminator(Probe(), ("cutout",), 0.125, 0.5, 1.0)
    x, y = torch.ones(4, 1, 8, 8), torch.arange(4)
    assert d(x, y)[1] == "aux"
    assert not torch.equal(seen[-1][0], x) and seen[-1][1] is y
    d.eval()
    d(x, y)
    assert torch.equal(seen[-1][0], x) and seen[-1][1] is y


def test_factory_builds_any_registered_base_with_its_params() -> None:
    d = diffaugment_discriminator(IMG, base="dcgan", base_params={"width": 4, "spectral_norm": True},
                                  policy=" translation , color")
    assert d.policy == ("translation", "color")
    assert d(torch.randn(3, 1, 8, 8)).shape[0] == 3
    assert any("parametrizations" in n for n, _ in d.base.named_modules())  # spectral_norm reached the base


@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "color,colour"}, "policy: unknown augmentation 'colour' in 'color,colour'. Did you mean 'color'? "
                                 "Valid: color, translation, cutout"),
    ({"policy": "cutout,cutout"}, "names an augmentation twice"),
    ({"base": "diffaugment"}, "'diffaugment' cannot wrap itself"),
])
def test_bad_parameters_get_one_line_naming_key_and_fix(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")) as err:
        diffaugment_discriminator(IMG, **kwargs)
    assert "\n" not in str(err.value)


def test_config_errors_name_the_config_key(registry, tmp_path) -> None:
    base = ["dataset=digits", "dataset.resolution=8", "discriminator.name=diffaugment", "generator.name=dcgan",
            "metrics.list=[]", f"root_dir={tmp_path}"]
    with pytest.raises(ConfigError, match=r"discriminator.p.*1\.5"):
        load_config(None, base + ["discriminator.p=1.5"], registry)
    with pytest.raises(ConfigError, match=r"discriminator.base.*'dcgn'.*Did you mean 'dcgan'"):
        load_config(None, base + ["discriminator.base=dcgn"], registry)
    # points: the dataset's kind is named
    with pytest.raises(ConfigError, match=r"diffaugment augments images.*'gaussian-ring' is of kind 'points'"):
        fit(load_config(None, ["discriminator.name=diffaugment", "discriminator.base=mlp", "metrics.list=[]",
                               f"root_dir={tmp_path}"], registry), progress=False, registry=registry)


# -- training: 100 digits, resume, two ranks ------------------------------------------------------------


def digits100(path: Path) -> Path:
    from ganforge_plugins.data.digits import digits_tensors

    x, y = digits_tensors("train", 8)
    np.savez(path, x=x[:100].numpy(), y=y[:100].numpy())
    return path


def small_run(data: Path, root: Path) -> list[str]:
    return [f"dataset={{name: tensor-file, path: {data}, labels_key: y}}", "generator.name=dcgan",
            "generator.width=8", "generator.latent_dim=8", "generator.conditioning=cbn",
            "discriminator={name: diffaugment, base_params: {width: 8, conditioning: projection, spectral_norm: true}}",
            "objective.name=hinge", "train.batch_size=20", "train.log_every_n_steps=2", "metrics.list=[]",
            "train.checkpoint_every_n_steps=4", "train.ema_halflife_images=200", "logger=csv", f"root_dir={root}"]


def test_conditional_digits_with_100_images_trains_logs_and_resumes_bit_exact(registry, tmp_path) -> None:
    common = small_run(digits100(tmp_path / "d100.npz"), tmp_path / "runs")
    whole = fit(load_config(None, common + ["name=whole", "train.max_steps=8"], registry), progress=False,
                registry=registry)
    fit(load_config(None, common + ["name=parts", "train.max_steps=4"], registry), progress=False, registry=registry)
    parts = fit(load_config(None, common + ["name=parts", "train.max_steps=8"], registry), resume="auto",
                progress=False, registry=registry)
    rows = (whole["run_dir"] / "metrics.csv").read_text()
    assert "d_loss" in rows and "g_loss" in rows
    a, b = whole["module"].state_dict(), parts["module"].state_dict()
    assert a.keys() == b.keys() and any("discriminator.base." in k for k in a)
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k}: the resumed run differs from the uninterrupted one"
    # ... and the augmentation did something: the same run without it ends elsewhere
    plain = common[:5] + ["discriminator={name: dcgan, width: 8, conditioning: projection, spectral_norm: true}"] \
        + common[6:]
    other = fit(load_config(None, plain + ["name=plain", "train.max_steps=8"], registry), progress=False,
                registry=registry)
    g = other["module"].generator.state_dict()
    assert any(not torch.equal(v, a[f"generator.{k}"]) for k, v in g.items())


@pytest.mark.distributed
def test_two_ranks_agree_bit_for_bit(tmp_path) -> None:
    # tests/ is on sys.path (its conftest.py); a "tests." import would find ganforge-astro's tests package
    from test_strategy import Ranks, assert_identical_across_ranks, run_worker, tail

    common = small_run(digits100(tmp_path / "d100.npz"), tmp_path / "runs")
    # G's batch-norm statistics are per rank until a checkpoint or evaluation averages them
    # (GANModule.sync_buffers): the last step is a checkpoint step, so the saved states must agree exactly.
    common = [o for o in common if not o.startswith("root_dir=")] + ["trainer.accelerator=cpu", "train.max_steps=6",
                                                                      "train.checkpoint_every_n_steps=3"]
    rc, log = run_worker([{"tag": "diffaugment", "overrides": common}], tmp_path / "ddp", timeout=400)
    assert rc == 0, tail(log)
    job = Ranks(tmp_path / "ddp", "diffaugment")
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    s0, s1 = job.states
    assert s0["world_size"] == 2 and s0["ddp_wrapped"] == ["discriminator", "generator"]
    assert json.dumps(s0["counters"]) == json.dumps(s1["counters"]) and s0["counters"]["g_steps"] == 6
