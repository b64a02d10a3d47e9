"""Class labels and continuous conditions together (issue 7).

With ``info.num_classes > 0 and info.cond_dim > 0`` ``y`` is float ``(N, 1 + cond_dim)``: the class
index in column 0, the conditions after it. These tests check the layout helpers on
:class:`ganforge.DataInfo`, that every network uses both parts, the projection term by hand,
PacGAN and AC-GAN, the evaluation conditions, and a short run end to end (tensor file →
``fit`` → ``ganforge sample --class --cond``). Tiny networks: the file runs in seconds.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch
from torch import nn

from ganforge import DataInfo
from ganforge_plugins.networks.biggan import biggan_discriminator, biggan_generator
from ganforge_plugins.networks.dcgan import dcgan_discriminator, dcgan_generator
from ganforge_plugins.networks.layers import ConditionalBatchNorm, condition_vector, cond_features
from ganforge_plugins.networks.mlp import mlp_discriminator, mlp_generator
from ganforge_plugins.networks.pacgan import packed_info, pacgan_discriminator
from ganforge_plugins.networks.resnet import resnet_discriminator, resnet_generator

K = 3  # classes
C = 2  # continuous conditions

GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": lambda info, **kw: dcgan_generator(info, latent_dim=8, width=4, **kw),
    "resnet": lambda info, **kw: resnet_generator(info, latent_dim=8, width=4, **kw),
    "biggan": lambda info, **kw: biggan_generator(info, latent_dim=12, width=4, shared_dim=4, **kw),
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": lambda info, **kw: dcgan_discriminator(info, width=4, **kw),
    "resnet": lambda info, **kw: resnet_discriminator(info, width=4, **kw),
    "biggan": lambda info, **kw: biggan_discriminator(info, width=4, **kw),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def both_info(shape: tuple[int, ...] = (1, 8, 8), kind: str = "image") -> DataInfo:
    return DataInfo(sample_shape=shape, num_classes=K, cond_dim=C, kind=kind, name="both")


def make_y(n: int) -> torch.Tensor:
    labels = torch.arange(n) % K
    return torch.cat([labels.float()[:, None], torch.randn(n, C)], dim=1)


def variants(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` with only the class changed, and with only the first condition changed."""
    other_class, other_cond = y.clone(), y.clone()
    other_class[:, 0] = (other_class[:, 0] + 1) % K
    other_cond[:, 1] += 1.0
    return other_class, other_cond


def wake_cbn(g: nn.Module) -> None:
    """Zero-initialised CBN starts as plain BN: give its gain something to say."""
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm):
                m.gain.weight.normal_(0, 0.5)


# -- DataInfo.split_conditions / join_conditions ----------------------------------------------------


@pytest.mark.parametrize("num_classes,cond_dim", [(0, 0), (4, 0), (0, 2), (4, 2), (4, 1)])
def test_split_join_round_trip(num_classes: int, cond_dim: int) -> None:
    info = DataInfo(sample_shape=(2,), num_classes=num_classes, cond_dim=cond_dim, name="t")
    labels = torch.tensor([0, 3, 1, 2]) if num_classes else None
    conds = torch.randn(4, cond_dim) if cond_dim else None
    y = info.join_conditions(labels, conds)
    if num_classes and cond_dim:
        assert y.dtype == torch.float32 and y.shape == (4, 1 + cond_dim)
        assert y[:, 0].tolist() == [0.0, 3.0, 1.0, 2.0]
        assert info.y_width == 1 + cond_dim
    elif num_classes:
        assert y.dtype == torch.long and y.shape == (4,)
        assert info.y_width == 0
    elif cond_dim:
        assert y is conds
    else:
        assert y is None
    back_labels, back_conds = info.split_conditions(y)
    if labels is None:
        assert back_labels is None
    else:
        assert back_labels.dtype == torch.long and torch.equal(back_labels, labels)
    if conds is None:
        assert back_conds is None
    else:
        assert torch.equal(back_conds, conds)


def test_split_and_join_errors() -> None:
    info = both_info((2,), "points")
    y = make_y(4)
    with pytest.raises(ValueError, match=r"must be a float tensor \(N, 3\): column 0 the class index 0\.\.2.*shape \(4, 2\)"):
        info.split_conditions(y[:, :2])
    with pytest.raises(ValueError, match=r"column 0 of y is the class index .* row 1 has 2\.5"):
        bad = y.clone()
        bad[1, 0] = 2.5
        info.split_conditions(bad)
    with pytest.raises(ValueError, match=r"integers 0\.\.2; row 0 has 3\.0"):  # out of range
        bad = y.clone()
        bad[0, 0] = 3
        info.split_conditions(bad)
    with pytest.raises(ValueError, match=r"integers 0\.\.2; row 2 has nan"):
        bad = y.clone()
        bad[2, 0] = float("nan")
        info.split_conditions(bad)
    # check=False (what the networks use, no GPU sync) takes the values as they are
    assert info.split_conditions(torch.tensor([[2.0, 0.1, 0.2]]), check=False)[0].tolist() == [2]
    with pytest.raises(ValueError, match=r"needs y"):
        info.split_conditions(None)
    with pytest.raises(ValueError, match=r"must be a float tensor"):
        info.split_conditions(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"4 class labels but 3 rows of conditions"):
        info.join_conditions(torch.arange(4) % K, torch.randn(3, C))
    with pytest.raises(ValueError, match=r"conditions must have shape \(N, 2\), got \(4, 3\)"):
        info.join_conditions(torch.arange(4) % K, torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"num_classes=3: give class labels"):
        info.join_conditions(None, torch.randn(4, C))
    with pytest.raises(ValueError, match=r"class labels must be integers"):
        info.join_conditions(torch.tensor([0.5, 1.0]), torch.randn(2, C))
    classes = DataInfo(sample_shape=(2,), num_classes=K, name="c")
    with pytest.raises(ValueError, match=r"integer tensor \(N,\) of class indices"):
        classes.split_conditions(torch.randn(4))
    with pytest.raises(ValueError, match=r"class labels must be in 0\.\.2, got values from 0 to 5"):
        classes.split_conditions(torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"cond_dim=0: pass conds=None"):
        classes.join_conditions(torch.tensor([0]), torch.randn(1, 1))
    with pytest.raises(ValueError, match=r"unconditional but got y"):
        DataInfo(sample_shape=(2,), name="u").split_conditions(torch.zeros(2))
    for key, value in (("num_classes", -1), ("cond_dim", 1.5), ("cond_dim", True)):
        with pytest.raises(ValueError, match=rf"DataInfo\.{key} must be an integer >= 0"):
            DataInfo(sample_shape=(2,), **{key: value})


# -- networks -------------------------------------------------------------------------------------------


def test_condition_vector_is_one_hot_then_conditions() -> None:
    info = both_info()
    y = make_y(4)
    v = condition_vector(y, info, torch.float32)
    assert cond_features(info) == K + C == v.shape[1]
    torch.testing.assert_close(v[:, :K], torch.nn.functional.one_hot(y[:, 0].long(), K).float())
    torch.testing.assert_close(v[:, K:], y[:, 1:])


@pytest.mark.parametrize(
    "arch,conditioning",  # biggan: its shared embedding into CBN, always
    [("dcgan", "concat"), ("dcgan", "cbn"), ("resnet", "concat"), ("resnet", "cbn"), ("biggan", "cbn")],
)
def test_generators_use_class_and_conditions(arch: str, conditioning: str) -> None:
    info = both_info()
    kw = {} if arch == "biggan" else {"conditioning": conditioning}
    g = GENERATORS[arch](info, **kw).eval()
    wake_cbn(g)
    z = torch.randn(4, *g.latent_shape)
    y = make_y(4)
    other_class, other_cond = variants(y)
    x = g(z, y)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()
    assert not torch.allclose(x, g(z, other_class)), "the class has no effect"
    assert not torch.allclose(x, g(z, other_cond)), "the continuous condition has no effect"


@pytest.mark.parametrize(
    "arch,conditioning",
    [("dcgan", "projection"), ("dcgan", "concat"), ("resnet", "projection"), ("resnet", "concat"),
     ("biggan", "projection")],
)
def test_discriminators_use_class_and_conditions(arch: str, conditioning: str) -> None:
    info = both_info()
    d = DISCRIMINATORS[arch](info, conditioning=conditioning).eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    y = make_y(4)
    other_class, other_cond = variants(y)
    logits = d(x, y)
    assert logits.shape == (4,)
    assert not torch.allclose(logits, d(x, other_class)), "the class has no effect"
    assert not torch.allclose(logits, d(x, other_cond)), "the continuous condition has no effect"


@pytest.mark.parametrize("arch", ["dcgan", "resnet", "biggan"])
def test_projection_term_by_hand(arch: str) -> None:
    """logit = w^T h + b + <E[k], h> + s^T V h: class embedding and projected conditions, each by hand."""
    info = both_info()
    d = DISCRIMINATORS[arch](info, conditioning="projection").eval()
    captured: dict[str, torch.Tensor] = {}
    d.head.register_forward_pre_hook(lambda m, args: captured.__setitem__("h", args[0]))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    y = make_y(4)
    logits = d(x, y)
    h = captured["h"]
    embed = d.head.embed
    e = embed.table.weight[y[:, 0].long()]  # (N, F): rows of the class table (spectrally normalized)
    v = embed.cond_table.weight  # (F, C)
    expected = d.head.linear(h).squeeze(1) + (e * h).sum(1) + ((y[:, 1:] @ v.T) * h).sum(1)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_mlp_uses_class_and_conditions() -> None:
    info = both_info((2,), "points")
    g, d = mlp_generator(info, width=16), mlp_discriminator(info, width=16)
    z = torch.randn(4, 2)
    y = make_y(4)
    other_class, other_cond = variants(y)
    x = g(z, y)
    assert x.shape == (4, 2)
    assert not torch.allclose(x, g(z, other_class)) and not torch.allclose(x, g(z, other_cond))
    assert not torch.allclose(d(x, y), d(x, other_class)) and not torch.allclose(d(x, y), d(x, other_cond))
    with pytest.raises(ValueError, match=r"y must be a float tensor of shape \(4, 3\)"):
        g(z, torch.arange(4) % K)
    with pytest.raises(ValueError, match=r"needs y; got y=None"):
        d(x)


def test_image_network_bad_y_is_one_clear_error() -> None:
    g = GENERATORS["dcgan"](both_info())
    with pytest.raises(ValueError, match=r"3 classes and 2 conditions y must be a float tensor of shape \(2, 3\).*"
                                         r"info\.join_conditions"):
        g(torch.randn(2, 8), torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"conditional \(3 classes and 2 conditions\) and needs y"):
        g(torch.randn(2, 8))


def test_pacgan_packs_class_and_conditions() -> None:
    info = both_info((2,), "points")
    packed = packed_info(info, 2)
    assert (packed.num_classes, packed.cond_dim) == (0, 2 * (K + C))
    d = pacgan_discriminator(info, base="mlp", pack=2, base_params={"width": 16})
    y = make_y(4)
    rows = d.pack_conditions(y, 4)
    one_hot = torch.nn.functional.one_hot(y[:, 0].long(), K).float()
    expected = torch.cat([one_hot, y[:, 1:]], dim=1).reshape(2, -1)  # sample 0's one-hot, its conds, sample 1's...
    torch.testing.assert_close(rows, expected)
    x = torch.randn(4, 2)
    other_class, other_cond = variants(y)
    logits = d(x, y)
    assert logits.shape == (2,)
    assert not torch.allclose(logits, d(x, other_class)) and not torch.allclose(logits, d(x, other_cond))
    image = pacgan_discriminator(both_info(), base="dcgan", pack=2, base_params={"width": 4})
    assert image(torch.rand(4, 1, 8, 8), y).shape == (2,)


def test_acgan_classifies_the_class_column() -> None:
    from ganforge_plugins.objectives.acgan import ACGAN

    info = both_info()
    d = DISCRIMINATORS["dcgan"](info, conditioning="projection", aux_classes=True)
    g = GENERATORS["dcgan"](info)
    objective = ACGAN(info=info)
    y = make_y(4)
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    fake = g(torch.randn(4, 8), y)
    out = objective.discriminator_loss(d, real, fake.detach(), y)
    # the class terms by hand: cross-entropy of the aux logits against column 0
    labels = y[:, 0].long()
    ce_real = torch.nn.functional.cross_entropy(d(real, y)[1], labels)
    torch.testing.assert_close(out.logs["cls_real"], ce_real.detach())
    assert torch.isfinite(objective.generator_loss(d, real, fake, y).loss)


# -- evaluation conditions --------------------------------------------------------------------------------


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def test_generation_conditions_draw_whole_rows() -> None:
    """Each drawn y is a real row: class 0 only ever with energies near 0, class 2 near 20."""
    from ganforge.evaluation.core import conditions_rule, generation_conditions

    info = both_info((2,), "points")
    labels = torch.arange(30) % K
    conds = torch.stack([labels * 10.0 + torch.rand(30), torch.rand(30)], dim=1)
    y = info.join_conditions(labels, conds)
    drawn = generation_conditions(info, _Rows(torch.zeros(30, 2), y), 200, seed=3)
    assert drawn.shape == (200, 3)
    real_rows = {tuple(r) for r in y.tolist()}
    assert all(tuple(r) in real_rows for r in drawn.tolist())
    assert set(drawn[:, 0].tolist()) == {0.0, 1.0, 2.0}
    torch.testing.assert_close(drawn, generation_conditions(info, _Rows(torch.zeros(30, 2), y), 200, seed=3))
    assert "whole rows of y" in conditions_rule(info)
    # class-only data keeps its balanced rule
    classes = DataInfo(sample_shape=(2,), num_classes=K)
    assert generation_conditions(classes, None, 5, seed=0).tolist() == [0, 1, 2, 0, 1]
    assert conditions_rule(classes).startswith("balanced classes")


def test_per_class_rows_in_pictures() -> None:
    from ganforge.reporting.imaging import samples_picture

    info = both_info((1, 8, 8))
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    y = make_y(6)
    by_class = samples_picture(x, info, "t", y=y)
    plain = samples_picture(x, info, "t")
    assert by_class.size != plain.size  # three labelled rows of two, not a 3x3 grid


# -- end to end: a tensor file with both → fit → ganforge sample -------------------------------------------


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    from ganforge.registry.registry import load_registry
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    root = tmp_path_factory.mktemp("both")
    r = np.random.default_rng(0)
    n = 64
    labels = np.arange(n) % 2
    energy = r.uniform(0, 1, n).astype(np.float32)
    x = (np.where(labels[:, None, None] == 1, 1.0, -1.0) * energy[:, None, None] * np.ones((8, 8))
         + r.normal(0, 0.1, (n, 8, 8))).astype(np.float32)
    np.savez(root / "both.npz", x=x, y=labels, c=energy)
    registry = load_registry(warn=False)
    overrides = [f"dataset={{name: tensor-file, path: {root / 'both.npz'}, labels_key: y, conditions_key: c}}",
                 "generator={name: dcgan, width: 4, latent_dim: 8, conditioning: cbn}",
                 "discriminator={name: dcgan, width: 4, conditioning: projection, spectral_norm: true}",
                 "objective.name=hinge", "train.batch_size=16", "train.max_steps=2", "metrics.list=[]",
                 "logger=csv", f"root_dir={root / 'runs'}", "name=both"]
    out = fit(load_config(None, overrides, registry), progress=False, registry=registry)
    return root, out


def test_fit_and_sample_with_class_and_condition(both_run, capsys, monkeypatch) -> None:
    from ganforge.cli.commands import main

    root, out = both_run
    info = out["module"].info
    assert (info.num_classes, info.cond_dim) == (2, 1)
    monkeypatch.chdir(root)
    ckpt = out["run_dir"] / "checkpoints" / "last.ckpt"
    assert main(["sample", str(ckpt), "--class", "1", "--cond", "0.5", "--num", "4", "--out", "s1"]) == 0, \
        capsys.readouterr().err
    s1 = np.load(root / "s1" / "samples.npz", allow_pickle=False)
    assert s1["x"].shape == (4, 1, 8, 8)
    assert s1["y"].tolist() == [[1.0, 0.5]] * 4
    assert main(["sample", str(ckpt), "--class", "0", "--cond", "0.5", "--num", "4", "--out", "s0"]) == 0
    assert not np.allclose(np.load(root / "s0" / "samples.npz")["x"], s1["x"])  # same noise, other class
    assert main(["sample", str(ckpt), "--class", "1", "--cond-grid", "0:1:2", "--num", "2", "--out", "g"]) == 0
    g = np.load(root / "g" / "samples.npz", allow_pickle=False)
    assert g["y"].tolist() == [[1.0, 0.0]] * 2 + [[1.0, 1.0]] * 2
    # --class alone: conditions drawn from the training samples of that class
    assert main(["sample", str(ckpt), "--class", "1", "--num", "6", "--out", "k"]) == 0
    k = np.load(root / "k" / "samples.npz", allow_pickle=False)
    data = np.load(root / "both.npz")
    assert np.all(k["y"][:, 0] == 1) and set(k["y"][:, 1].tolist()) <= set(data["c"][data["y"] == 1].tolist())
    assert main(["sample", str(ckpt), "--num", "6", "--out", "any"]) == 0  # whole rows of the data
    capsys.readouterr()
    for extra, message in [
        (["--cond", "0.5"], "--cond 0.5: this model takes a class as well as its 1 condition; add --class K (0..1)."),
        (["--class", "2", "--cond", "0.5"], "--class 2: out of range; classes are 0..1."),
        (["--class", "1", "--cond", "0.5,1"], "--cond 0.5,1: 2 values per condition, but the model has 1"),
    ]:
        assert main(["sample", str(ckpt), "--out", "bad", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ganforge: error: {message}"), err
        assert "Traceback" not in err


def test_bad_class_column_is_one_clear_error(tmp_path) -> None:
    """A class column of 2.5 (or a width mismatch) reaching a network or the loop is named once, clearly."""
    from ganforge_plugins.data.tensor_file import tensor_file

    np.savez(tmp_path / "f.npz", x=np.zeros((4, 2), np.float32), y=np.array([0.0, 2.5, 1.0, 0.0]),
             c=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"labels 'y' in .*f\.npz must be integer class indices, got dtype "
                                         r"torch\.float64"):
        tensor_file(str(tmp_path / "f.npz"), labels_key="y", conditions_key="c")
    info = both_info((2,), "points")
    with pytest.raises(ValueError, match=r"column 0 of y is the class index and must hold integers 0\.\.2; row 1 "
                                         r"has 2\.5") as exc:
        info.split_conditions(torch.tensor([[0.0, 1.0, 1.0], [2.5, 1.0, 1.0]]))
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=r"^generator 'mlp': with 3 classes and 2 conditions y must be a float tensor "
                                         r"of shape \(2, 3\)"):
        mlp_generator(info)(torch.randn(2, 2), torch.randn(2, 4))
