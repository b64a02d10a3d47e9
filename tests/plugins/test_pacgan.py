"""PacGAN packing (Lin et al. 2018) and minibatch standard deviation (Karras et al. 2018).

Shapes and orders by hand, the wrapper against its base on an explicitly packed input, conditions
in packs, R1 / WGAN-GP through the wrapper, the minibatch-std feature against a hand computation,
the errors, a short ring8 run, and two-process runs whose ranks agree bit for bit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganforge import DataInfo, build_component
from ganforge.registry.errors import ConfigError
from ganforge.run.runner import check_batch_groups
from ganforge_plugins.networks.dcgan import dcgan_discriminator
from ganforge_plugins.networks.layers import MinibatchStd
from ganforge_plugins.networks.pacgan import packed_info, pacgan_discriminator
from ganforge_plugins.networks.resnet import resnet_discriminator
from ganforge_plugins.objectives.common import logits_and_r1

POINTS = DataInfo((2,), name="ring")
IMAGES = DataInfo((1, 8, 8), kind="image", name="imgs")
IMAGES16 = DataInfo((1, 16, 16), kind="image", name="imgs16")


def pac(info: DataInfo, pack: int, base: str = "mlp", **base_params) -> torch.nn.Module:
    torch.manual_seed(0)
    return pacgan_discriminator(info, base=base, pack=pack, base_params=base_params)


# -- packing ------------------------------------------------------------------------------------------


def test_packing_order_and_shapes_by_hand() -> None:
    d = pac(POINTS, 3, width=8, depth=1)
    x = torch.arange(12.0).reshape(6, 2)  # sample i = (2i, 2i+1)
    assert torch.equal(d.pack_samples(x), torch.tensor([[0.0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]))
    assert d(x).shape == (2,)  # one logit per pack
    di = pac(IMAGES, 2, "dcgan", width=4)
    imgs = torch.arange(4 * 64.0).reshape(4, 1, 8, 8)
    packed = di.pack_samples(imgs)
    assert packed.shape == (2, 2, 8, 8)  # the samples stacked as channels
    for p in range(2):
        for j in range(2):
            assert torch.equal(packed[p, j], imgs[2 * p + j, 0])
    assert di(imgs).shape == (2,)
    info = packed_info(DataInfo((3, 8, 8), kind="image", denormalize={"scale": [1.0, 2.0, 3.0], "offset": [0.0]}), 2)
    assert info.sample_shape == (6, 8, 8) and info.denormalize == {"scale": [1.0, 2, 3, 1, 2, 3], "offset": [0.0]}


@pytest.mark.parametrize("m", [2, 4])
def test_equals_the_base_on_an_explicitly_packed_input(m: int) -> None:
    d = pac(POINTS, m, width=16)
    torch.manual_seed(0)  # the same draws: the same weights as the wrapper's base
    base = build_component("discriminator", "mlp", {"width": 16}, info=DataInfo((2 * m,)))
    x = torch.randn(4 * m, 2)
    explicit = torch.stack([torch.cat([x[i * m + j] for j in range(m)]) for i in range(4)])
    assert torch.equal(d(x), base(explicit))
    assert torch.equal(d(x), d.inner(explicit))
    # convolutional: m x channels
    dc = pac(IMAGES, m, "dcgan", width=4, spectral_norm=True).eval()  # eval: no power iteration per call
    imgs = torch.randn(2 * m, 1, 8, 8)
    explicit = torch.stack([torch.cat([imgs[i * m + j] for j in range(m)]) for i in range(2)])
    assert torch.equal(dc(imgs), dc.inner(explicit))


def test_class_labels_travel_as_concatenated_one_hots() -> None:
    info = DataInfo((2,), num_classes=3)
    d = pac(info, 2, width=8)
    assert d.inner.cond.cond_dim == 6 and d.inner.cond.embed is None  # built for 2 x 3 continuous conditions
    y = torch.tensor([0, 2, 1, 1])
    expected = torch.tensor([[1.0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0]])
    assert torch.equal(d.pack_conditions(y, 4), expected)
    x = torch.randn(4, 2)
    assert torch.equal(d(x, y), d.inner(d.pack_samples(x), expected))
    # swapping the labels inside a pack changes the decision: the pairing of samples and labels is kept
    assert not torch.equal(d(x, torch.tensor([2, 0, 1, 1]))[0], d(x, y)[0])
    # continuous conditions are concatenated in sample order; a conv base with projection takes them too
    cinfo = DataInfo((1, 8, 8), cond_dim=2, kind="image")
    dc = pac(cinfo, 2, "resnet", width=4)
    yc = torch.arange(8.0).reshape(4, 2)
    assert torch.equal(dc.pack_conditions(yc, 4), torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7]]))
    assert dc(torch.randn(4, 1, 8, 8), yc).shape == (2,)


# -- penalties through the wrapper ---------------------------------------------------------------------


def test_r1_is_the_packed_discriminators_r1_over_m() -> None:
    m = 4
    d = pac(POINTS, m, width=16)
    x = torch.randn(8 * m, 2)
    logits, r1 = logits_and_r1(d, x, None, 10.0)
    assert logits.shape == (8,)
    packed = d.pack_samples(x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(d.inner(packed).sum(), packed)
    pack_r1 = g.pow(2).sum(1).mean()  # E over packs of ||grad of the pack's logit||^2
    torch.testing.assert_close(r1, pack_r1 / m)
    r1.backward()  # double backward reaches every weight of the base (biases of the last layer cannot matter)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters() if p.ndim >= 2)


def test_wgan_gp_through_the_wrapper() -> None:
    m = 2
    d = pac(DataInfo((2,), num_classes=3), m, width=16)
    wgan_gp = build_component("objective", "wgan-gp", {"gp_weight": 10.0})
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    y = torch.randint(0, 3, (16,))
    torch.manual_seed(1)
    out = wgan_gp.discriminator_loss(d, real, fake, y)
    torch.manual_seed(1)
    gp, _ = wgan_gp.gradient_penalty(d, real, fake, y)
    # by hand: the same interpolation, per-sample norms of the gradient of each pack's logit
    torch.manual_seed(1)
    alpha = torch.rand(16, 1)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(d(x_hat, y).sum(), x_hat)
    torch.testing.assert_close(gp, (g.norm(dim=1) - 1).pow(2).mean())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


# -- errors -------------------------------------------------------------------------------------------


def test_bad_parameters_and_batches() -> None:
    with pytest.raises(ValueError, match=r"discriminator.pack=1: .* use an integer >= 2"):
        pacgan_discriminator(POINTS, pack=1)
    with pytest.raises(ValueError, match=r"discriminator.base='pacgan'"):
        pacgan_discriminator(POINTS, base="pacgan")
    with pytest.raises(ValueError, match=r"aux_classes=true: a pack has no single class"):
        pacgan_discriminator(DataInfo((1, 8, 8), num_classes=3, kind="image"), base="dcgan",
                             base_params={"aux_classes": True})
    with pytest.raises(ConfigError, match=r"discriminator.base"):
        pacgan_discriminator(POINTS, base="mpl")
    d = pac(POINTS, 4, width=8)
    with pytest.raises(ValueError, match=r"pack=4 must divide the batch .* got 6 samples; set train.batch_size"):
        d(torch.randn(6, 2))
    # at start-up: the batch per process, per discriminator step
    check_batch_groups(d, 64, 2, "pacgan")
    with pytest.raises(ConfigError, match=r"^train.batch_size=36: discriminator 'pacgan' groups 4 samples per "
                                          r"decision .* \(36 / 2 = 18\) must be a multiple of 4; use a multiple of 8, e.g. 32\.$"):
        check_batch_groups(d, 36, 2, "pacgan")
    check_batch_groups(torch.nn.Linear(1, 1), 3, 2, "mlp")  # no groups: nothing to check
    # a packed minibatch-std base: groups of 2 packs of 4 samples
    dm = pac(IMAGES, 4, "dcgan", width=4, minibatch_std=2)
    assert dm.batch_multiple == 8


def test_config_error_names_train_batch_size(registry, tmp_path) -> None:
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    cfg = load_config(None, ["discriminator={name: pacgan, pack: 3}", "train.batch_size=64", "train.max_steps=2",
                             "metrics.list=[]", f"root_dir={tmp_path}", "trainer.accelerator=cpu"], registry)
    with pytest.raises(ConfigError, match=r"^train.batch_size=64: discriminator 'pacgan' groups 3 .* e.g. 63\.$"):
        fit(cfg)


# -- minibatch standard deviation ---------------------------------------------------------------------


def test_minibatch_std_by_hand() -> None:
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [1.0, 1.0]]).reshape(4, 1, 1, 2)
    out = MinibatchStd(2, "D")(x)
    assert out.shape == (4, 2, 1, 2) and torch.equal(out[:, :1], x)
    # group {0, 1}: per-position std (biased) 1 and 2, mean 1.5; group {2, 3}: identical samples, sqrt(eps)
    expected = torch.tensor([1.5, 1.5, 1e-4, 1e-4])
    torch.testing.assert_close(out[:, 1], expected[:, None, None].expand(4, 1, 2), rtol=1e-6, atol=1e-9)
    # a sample's feature depends on its own group only
    xr = torch.randn(8, 3, 4, 4, requires_grad=True)
    (g,) = torch.autograd.grad(MinibatchStd(4, "D")(xr)[0, 3].sum(), xr)
    assert g[1:4].abs().sum() > 0 and g[4:].abs().sum() == 0


@pytest.mark.parametrize("factory", [dcgan_discriminator, resnet_discriminator])
def test_minibatch_std_in_the_image_discriminators(factory) -> None:
    torch.manual_seed(0)
    plain = factory(IMAGES16, width=4)
    torch.manual_seed(0)
    with_std = factory(IMAGES16, width=4, minibatch_std=4)
    assert not any(isinstance(m, MinibatchStd) for m in plain.modules())  # the default is off: nothing changes
    assert plain.batch_multiple == 1 and with_std.batch_multiple == 4
    def convs(net):  # by position among the convolutions (the std layer shifts Sequential indices)
        return [(n.rsplit(".", 1)[-1], m.in_channels) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]

    before, after = convs(plain), convs(with_std)
    if len(after) > len(before):  # resnet: the last block's channels now change, so it gets a 1x1 shortcut
        assert len(after) == len(before) + 1 and after[-1][0] == "shortcut"
        after = after[:-1]
    diffs = [b[1] - a[1] for a, b in zip(before, after)]
    assert set(diffs) == {0, 1} and diffs.index(1) >= len(diffs) - 2  # +1 channel into the last block only
    x = torch.randn(8, 1, 16, 16)
    assert with_std(x).shape == (8,)
    x2 = x.clone()
    x2[0] = 0
    with_std.eval()  # batch norm's running statistics: only the minibatch std mixes samples
    assert torch.equal(with_std(x)[4:], with_std(x2)[4:]) and not torch.equal(with_std(x)[1:4], with_std(x2)[1:4])
    with pytest.raises(ValueError, match=r"minibatch_std=4 must divide the batch .* got a batch of 6; set train.batch_size"):
        with_std(torch.randn(6, 1, 16, 16))
    for bad in (1, -2, True):
        with pytest.raises(ValueError, match=r"minibatch_std=.* use 0 \(off\) or an integer >= 2"):
            factory(IMAGES16, minibatch_std=bad)


# -- training -----------------------------------------------------------------------------------------


def test_ring8_short_run_trains(registry, tmp_path) -> None:
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    # the ring8 demo with PacGAN4 (1,500 steps gave 8/8 modes, KL 0.13, in 33 s on 2 busy cores)
    cfg = load_config(None, ["discriminator={name: pacgan, pack: 4}", "train.max_steps=1000",
                             "train.ema_halflife_images=2000", "metrics.every_n_steps=1000",
                             "train.checkpoint_every_n_steps=100000", f"root_dir={tmp_path}",
                             "trainer.accelerator=cpu"], registry)
    result = fit(cfg)
    values = result["summary"]["metrics"]["mode-coverage"]["values"]
    assert values["modes"] >= 6, values  # a packed D trains: the generator spreads over the ring
    assert result["module"].discriminator.inner.net[0].in_features == 8  # the base saw packs of 4 points


# -- two processes: the ranks agree bit for bit -------------------------------------------------------


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory):
    from test_strategy import SMALL, conditional_data, run_worker, tail

    out = tmp_path_factory.mktemp("pacgan-ddp")
    cond = conditional_data(out / "cond.npz")
    plain = [o for o in SMALL if not o.startswith(("generator.", "discriminator."))]
    jobs = [
        {"tag": "pacgan-ring", "overrides": SMALL + ["discriminator={name: pacgan, pack: 4, base_params: {width: 32}}",
                                                     "train.max_steps=60"]},
        {"tag": "pacgan-cond-wgan-gp", "overrides": SMALL + [cond, "objective.name=wgan-gp", "objective.n_critic=2",
                                                             "discriminator={name: pacgan, pack: 2}", "train.max_steps=20"]},
        {"tag": "mbstd-dcgan", "overrides": plain + ["dataset={name: digits}", "generator={name: mlp, width: 32}",  # no batch norm:
                                                     # its running statistics are per rank by design
                                                     "discriminator={name: dcgan, width: 8, spectral_norm: true, "
                                                     "minibatch_std: 4}",
                                                     "train.max_steps=20"]},
    ]
    rc, log = run_worker(jobs, out)
    if rc != 0:
        pytest.fail(f"the distributed worker exited with {rc}; log tail:\n{tail(log)}")
    return out, log


@pytest.mark.parametrize("tag", ["pacgan-ring", "pacgan-cond-wgan-gp", "mbstd-dcgan"])
def test_two_ranks_agree_bit_for_bit(ddp_runs, tag: str) -> None:
    from test_strategy import Ranks, assert_identical_across_ranks

    out, log = ddp_runs
    job = Ranks(out, tag)
    job.assert_ok(log)
    assert_identical_across_ranks(job)
    s0, s1 = job.states
    assert s0["world_size"] == 2 and not torch.equal(s0["first_batch"], s1["first_batch"])
    assert s0["counters"]["d_steps"] > 0
