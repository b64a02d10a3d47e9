"""Constrained GANs: the ``constraint`` kind, the ``constrained`` objective, ``box`` and ``norm-range``, calibration
stored with the run (checkpoints, ``constraints.json``, bit-exact resume), and the docs' third-party calibrated
constraint installed and trained with, on one process and on two."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import make_fake_distribution
from ganforge import CalibratedConstraint, CalibratedObjective, Constraint, DataInfo, LossOutput
from ganforge.cli import commands as cli
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import get_registry
from ganforge.run import config as config_mod

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
POINTS = DataInfo(sample_shape=(2,), name="gaussian-ring")
IMAGES = DataInfo(sample_shape=(3, 4, 4), kind="image", name="digits")
TINY = ["generator.width=32", "generator.depth=2", "discriminator.width=32", "discriminator.depth=2",
        "dataset.num_samples=1000", "train.batch_size=64", "train.log_every_n_steps=5", "train.ema_halflife_images=500",
        "metrics.list=[]", "metrics.every_n_steps=0", "samples.every_n_steps=1000000", "logger=csv"]


@pytest.fixture(autouse=True)
def _no_run_dir(monkeypatch):
    monkeypatch.delenv("GANFORGE_RUN_DIR", raising=False)


def build(kind: str, spec: dict[str, Any], info: DataInfo = POINTS) -> Any:
    reg = get_registry()
    return reg.create(kind, reg.resolve(kind, spec), kind, info=info)


def constrained(*constraints: dict[str, Any], info: DataInfo = POINTS, **kw: Any) -> Any:
    return build("objective", {"name": "constrained", "constraints": list(constraints), **kw}, info)


# -- box and norm-range: the formulas by hand ---------------------------------------------------------------


def test_box_penalty_by_hand() -> None:
    box = build("constraint", {"name": "box", "low": -1.0, "high": [1.0, 0.5]})
    assert isinstance(box, Constraint) and not isinstance(box, CalibratedConstraint)
    x = torch.tensor([[0.0, 0.0], [1.5, 0.0], [-3.0, 1.0], [2.0, -1.25]])
    # Σ_j relu(x_j - high_j)² + relu(low_j - x_j)²
    want = torch.tensor([0.0, 0.5 ** 2, 2.0 ** 2 + 0.5 ** 2, 1.0 ** 2 + 0.25 ** 2])
    assert torch.allclose(box.penalty(x, None), want, rtol=0, atol=1e-7)
    img = build("constraint", {"name": "box", "low": 0.0, "high": [1.0, 2.0, 3.0]}, IMAGES)
    x = torch.zeros(2, 3, 4, 4)
    x[0, 2, 0, 0] = 4.0  # channel 2 above its 3.0 by 1
    x[1, 0, 1, 1] = -0.5  # channel 0 below 0 by 0.5
    x[1, 1, 3, 3] = 2.0  # exactly at channel 1's bound: no penalty
    assert img.penalty(x, None).tolist() == [1.0, 0.25]


def test_norm_range_penalty_by_hand() -> None:
    ring = build("constraint", {"name": "norm-range", "low": 0.8, "high": 1.2})
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.3, 0.4], [0.6, 0.8], [-1.2, 0.0]])  # norms 1, 2, 0.5, 1, 1.2
    want = torch.tensor([0.0, 0.8 ** 2, 0.3 ** 2, 0.0, 0.0])
    assert torch.allclose(ring.penalty(x, None), want, rtol=0, atol=1e-6)
    assert ring.penalty(x, None)[[0, 3, 4]].eq(0).all()  # exactly 0 inside the annulus


@pytest.mark.parametrize("spec, info, says", [
    ({"name": "norm-range", "low": 2.0, "high": 1.0}, POINTS, "low must be < high, got low=2.0 >= high=1.0"),
    ({"name": "norm-range", "low": 1.0, "high": 1.0}, POINTS, "low must be < high"),
    ({"name": "norm-range", "low": -1.0, "high": 1.0}, POINTS, "low must be >= 0"),
    ({"name": "norm-range", "low": 0.5, "high": float("inf")}, POINTS, "high must be a finite number"),
    ({"name": "norm-range"}, IMAGES, "norm-range constrains the norm of points .* use the box constraint"),
    ({"name": "box", "low": 1.0, "high": 0.0}, POINTS, "low must be < high"),
    ({"name": "box", "low": [0.0, float("nan")]}, POINTS, r"low\[1\] must be a finite number"),
    ({"name": "box", "high": [1.0, 2.0, 3.0]}, POINTS, "high must be one number or 2 .one per feature"),
    ({"name": "box", "low": [0.0, 0.0], "high": [1.0, 2.0]}, IMAGES, "low must be one number or 3 .one per channel"),
])
def test_bad_constraint_parameters_are_one_config_error_naming_the_entry(spec, info, says) -> None:
    with pytest.raises(ConfigError, match=r"^objective\.constraints\[0\] \(constraint '" + spec["name"] + "'.*" + says):
        constrained(spec, info=info)


# -- the constrained objective ---------------------------------------------------------------------------


class _D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.lin(x)


def test_generator_loss_is_the_base_plus_weighted_mean_penalties_exactly() -> None:
    obj = constrained({"name": "norm-range", "low": 0.8, "high": 1.2, "weight": 2.5},
                      {"name": "box", "low": -1.0, "high": 1.0, "weight": 0.5, "id": "unit-box"}, base="hinge")
    base = build("objective", {"name": "hinge"})
    torch.manual_seed(0)
    D, G = _D(), torch.nn.Linear(3, 2)
    real, z = torch.randn(16, 2), torch.randn(16, 3) * 2
    fake = G(z)
    out = obj.generator_loss(D, real, fake, None)
    ref = base.generator_loss(D, real, fake, None)
    ring = build("constraint", {"name": "norm-range", "low": 0.8, "high": 1.2}).penalty(fake, None)
    box = build("constraint", {"name": "box", "low": -1.0, "high": 1.0}).penalty(fake, None)
    assert bool(ring.gt(0).any()) and bool(box.gt(0).any())  # both constraints active in this batch
    assert torch.equal(out.loss, ref.loss + 2.5 * ring.mean() + 0.5 * box.mean())
    assert out.logs.keys() == ref.logs.keys()
    assert torch.equal(out.run_logs["constraint/norm-range"], ring.mean())
    assert torch.equal(out.run_logs["constraint/unit-box/violated"], box.gt(0).float().mean())
    # D's loss is the base's, unchanged
    assert torch.equal(obj.discriminator_loss(D, real, fake.detach(), None).loss,
                       base.discriminator_loss(D, real, fake.detach(), None).loss)
    # the penalties' gradients reach G: a weight-only objective (the base's loss does not depend on G here)
    G.zero_grad()
    (out.loss - ref.loss).backward()
    assert G.weight.grad is not None and G.weight.grad.abs().sum() > 0
    # weight 0: logged, but G's loss stays the base's exactly
    watch = constrained({"name": "norm-range", "low": 0.8, "high": 1.2, "weight": 0.0}, base="hinge")
    assert torch.equal(watch.generator_loss(D, real, fake, None).loss, ref.loss)


def test_the_engine_reads_the_base_objectives_attributes() -> None:
    ring = {"name": "norm-range", "low": 0.5, "high": 1.5}
    gp = constrained(ring, base="wgan-gp")
    assert (gp.n_critic, gp.needs_double_backward, gp.weight_clip, gp.reg_every) == (5, True, None, 1)
    clip = constrained(ring, base="wgan", base_params={"weight_clip": 0.02})
    assert (clip.n_critic, clip.weight_clip) == (5, 0.02)
    lazy = constrained(ring, base="non-saturating", base_params={"r1_weight": 1.0, "r1_every": 4})
    assert (lazy.reg_every, lazy.needs_double_backward) == (4, True)
    D = _D()
    real = torch.randn(8, 2)
    reg = lazy.discriminator_regularization(D, real, real, None)
    assert isinstance(reg, LossOutput) and reg.loss.item() > 0
    assert isinstance(lazy, CalibratedObjective) and not lazy.needs_calibration()
    p = gp.protocol()
    assert p["base"] == "wgan-gp" and p["base_protocol"]["gp_weight"] == 10.0
    assert p["constraints"] == [{"id": "norm-range", "name": "norm-range", "weight": 1.0,
                                 "params": {"low": 0.5, "high": 1.5}, "calibrated": False, "state": None}]


@pytest.mark.parametrize("override, says", [
    ("[{name: norm-rang}]", r"objective\.constraints\[0\]\.name: unknown constraint 'norm-rang'\. Did you mean 'norm-range'\?"),
    ("[{name: box}, {name: box, weight: -1}]", r"objective\.constraints\[1\]\.weight: must be >= 0, got -1"),
    ("[{name: box, weight: .nan}]", r"objective\.constraints\[0\]\.weight: must be a finite number >= 0"),
    ("[{name: box}, {name: box}]", r"objective\.constraints\[1\]\.id: 'box' is also the id of objective\.constraints\[0\]"),
    ("[{name: box, id: a}, {name: norm-range, id: a}]", r"objective\.constraints\[1\]\.id: 'a' is also the id"),
    ("[{name: box, lw: 1}]", r"objective\.constraints\[0\]\.lw: unknown parameter of constraint 'box'\. Did you mean "
                             r"'low'\?.*The entry's own keys: id, weight"),
    ("[{name: box, low: abc}]", r"objective\.constraints\[0\]\.low: expected float \| list\[float\], got 'abc'"),
    ("[{weight: 1}]", r"objective\.constraints\[0\]\.name: missing; registered constraints: .*box"),
    ("[3]", r"objective\.constraints: expected list\[dict"),
])
def test_config_errors_name_the_key_path(registry, override, says) -> None:
    with pytest.raises(ConfigError, match=says):
        config_mod.load_config(None, ["objective.name=constrained", f"objective.constraints={override}"], registry)


def test_config_show_fills_the_defaults(registry) -> None:
    cfg = config_mod.load_config(None, ["objective.name=constrained", "objective.constraints=[{name: box, id: b}, "
                                        "{name: norm-range, weight: 0.5}]"], registry)
    assert cfg["objective"] == {
        "name": "constrained", "base": "non-saturating", "calibration_samples": 20000,
        "base_params": {"r1_weight": 0.0, "r1_every": 16},
        "constraints": [{"name": "box", "weight": 1.0, "id": "b", "low": -1.0, "high": 1.0},
                        {"name": "norm-range", "weight": 0.5, "id": "norm-range", "low": 0.0, "high": 1.0}]}
    with pytest.raises(ConfigError, match="objective.base must be an adversarial objective, got 'constrained'"):
        constrained(base="constrained")


def test_plugins_lists_the_kind_under_its_distribution(capsys) -> None:
    assert cli.main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^constraints  \(ganforge [^,]+, module ganforge_plugins\.constraints\.builtin, plugin API 2\)\n"
                     r"  constraint +box +Per-feature/pixel bounds.*\n      low: float \| list\[float\] = -1\.0", text,
                     flags=re.M), text
    assert re.search(r"^  objective +constrained +Constrained GAN", text, flags=re.M)
    report = cli.plugins_report(get_registry())
    (plugin,) = [p for p in report["plugins"] if p["name"] == "constraints"]
    assert plugin["distribution"] == "ganforge" and plugin["api"] == 2
    assert {(c["kind"], c["name"]) for c in plugin["components"]} == {("constraint", "box"),
                                                                      ("constraint", "norm-range")}


# -- the docs' calibrated constraint, installed and trained with --------------------------------------------


def docs_constraint_example() -> str:
    """The complete third-party constraint of docs/plugins.md ("Constraints"), as written there."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (example,) = [b for b in blocks if "ganforge_register_constraints" in b]
    assert len(example.splitlines()) < 45
    return example


@pytest.fixture
def sigma(tmp_path, monkeypatch):
    """The docs' example installed as the distribution ganforge-sigma (on sys.path), the registry reloaded."""
    site = make_fake_distribution(tmp_path / "site", "ganforge-sigma", {"ganforge_sigma": docs_constraint_example()},
                                  {"sigma": "ganforge_sigma"})
    monkeypatch.syspath_prepend(str(site))
    reg = get_registry(refresh=True)
    yield site, reg
    sys.modules.pop("ganforge_sigma", None)
    monkeypatch.undo()
    get_registry(refresh=True)


SIGMA = ["objective.name=constrained", "objective.base=hinge",
         "objective.constraints=[{name: within-sigma, k: 2.0}, {name: norm-range, low: 0.9, high: 1.1, weight: 0.5}]"]


def _fit(tmp_path: Path, *extra: str) -> int:
    return cli.main(["fit", *TINY, *SIGMA, f"root_dir={tmp_path / 'runs'}", *extra])


def test_calibrated_once_stored_logged_and_resumed_bit_exactly(tmp_path, sigma, monkeypatch, capsys) -> None:
    _, reg = sigma
    cls = reg.get("constraint", "within-sigma").factory
    calls: list[int] = []
    real_calibrate = cls.calibrate

    def counting(self, x, y):
        calls.append(int(x.shape[0]))
        return real_calibrate(self, x, y)

    monkeypatch.setattr(cls, "calibrate", counting)
    assert _fit(tmp_path / "a", "train.max_steps=20", "train.checkpoint_every_n_steps=10") == 0
    assert calls == [1000]  # once, on the whole (small) training set
    (run,) = (tmp_path / "a" / "runs").glob("*/*")
    # constraints.json: what was measured, by hand
    from ganforge.loop.data import materialize
    from ganforge.run.runner import build_components

    cfg = config_mod.load_config(None, [*TINY, *SIGMA], reg)
    x, _ = materialize(build_components(cfg, reg).datamodule.dataset)
    record = json.loads((run / "constraints.json").read_text())
    state = record["constraints"]["within-sigma"]
    assert record["calibrated_on"] == 1000 and list(record["constraints"]) == ["within-sigma"]
    assert torch.allclose(torch.tensor(state["mean"]), x.double().mean(0).float(), atol=1e-7, rtol=0)
    assert torch.allclose(torch.tensor(state["std"]), x.double().std(0).float(), atol=1e-7, rtol=0)
    # ... in every checkpoint, loadable as data
    blob = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.equal(blob["objective"]["constraints"]["within-sigma"]["mean"], torch.tensor(state["mean"]))
    # ... and given back to `ganforge sample` / `evaluate`, which do not calibrate
    from ganforge.run.checkpoint import load_module

    loaded = load_module(run / "checkpoints" / "last.ckpt", reg)
    assert torch.equal(loaded.objective.constraints[0].std, torch.tensor(state["std"]))
    # ... in summary.json's objective record
    summary = json.loads((run / "summary.json").read_text())
    entries = summary["objective"]["protocol"]["constraints"]
    assert [(e["id"], e["weight"], e["calibrated"]) for e in entries] == [("within-sigma", 1.0, True),
                                                                         ("norm-range", 0.5, False)]
    assert entries[0]["params"] == {"k": 2.0} and entries[0]["state"] == state
    # logged at every logging step: the mean penalty and the violated fraction
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = [r for r in rows if r.get("train/constraint/within-sigma")]
    assert [int(r["step"]) for r in logged] == [5, 10, 15, 20]
    for r in logged:
        assert float(r["train/constraint/within-sigma"]) >= 0
        assert 0 <= float(r["train/constraint/norm-range/violated"]) <= 1
    assert "train/constraint/within-sigma/violated" in rows[0]

    # stopped at step 10 and resumed to 20: not calibrated again, the same networks bit for bit as straight
    calls.clear()
    assert _fit(tmp_path / "b", "train.max_steps=10") == 0
    assert calls == [1000]
    (run_b,) = (tmp_path / "b" / "runs").glob("*/*")
    assert _fit(tmp_path / "b", "train.max_steps=20", "--resume", str(run_b / "checkpoints" / "last.ckpt")) == 0
    assert calls == [1000]  # the resume restored the state instead
    resumed = torch.load(run_b / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["ganforge"]["counters"]["g_steps"] == 20
    assert resumed["state_dict"].keys() == blob["state_dict"].keys()
    for k, v in blob["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert torch.equal(resumed["objective"]["constraints"]["within-sigma"]["std"],
                       blob["objective"]["constraints"]["within-sigma"]["std"])
    assert json.loads((run_b / "constraints.json").read_text())["constraints"] == record["constraints"]


def test_a_missing_or_corrupt_state_names_the_checkpoint_and_the_id(tmp_path, sigma, capsys) -> None:
    assert _fit(tmp_path, "train.max_steps=5") == 0
    (run,) = (tmp_path / "runs").glob("*/*")
    blob = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    capsys.readouterr()
    for name, edit, says in [
        ("no-objective.ckpt", lambda b: b.pop("objective"), "has no objective state"),
        ("no-id.ckpt", lambda b: b["objective"]["constraints"].pop("within-sigma"),
         "no state for the calibrated constraint id 'within-sigma'"),
        ("bad-state.ckpt", lambda b: b["objective"]["constraints"]["within-sigma"].pop("mean"),
         "the state of constraint id 'within-sigma' .constraint 'within-sigma'. is malformed: KeyError"),
    ]:
        bad = dict(blob, objective={"calibrated_on": 1000, "constraints": {
            k: dict(v) for k, v in blob["objective"]["constraints"].items()}})
        edit(bad)
        torch.save(bad, run / "checkpoints" / name)
        rc = _fit(tmp_path, "train.max_steps=10", "--resume", str(run / "checkpoints" / name))
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.startswith("ganforge: error:")]
        assert rc == 2 and len(lines) == 1, err
        assert f"checkpoint '{run / 'checkpoints' / name}'" in lines[0] and re.search(says, lines[0]), lines[0]


def test_plugins_lists_the_installed_example_under_its_distribution(sigma) -> None:
    _, reg = sigma
    report = cli.plugins_report(reg)
    (plugin,) = [p for p in report["plugins"] if p["distribution"] == "ganforge-sigma"]
    assert plugin["api"] == 2 and [(c["kind"], c["name"]) for c in plugin["components"]] == [
        ("constraint", "within-sigma")]
    assert plugin["components"][0]["parameters"] == [{"name": "k", "type": "float", "default": "3.0",
                                                      "required": False}]
    assert not report["failed"]


# -- two processes: the same calibration on every rank, no collective ---------------------------------------

PROBE = '''
import os
from pathlib import Path

import torch

from ganforge import hookimpl
from ganforge_sigma import WithinSigma

GANFORGE_PLUGIN_API = 2


class RecordedSigma(WithinSigma):
    def __init__(self, out: str = "", k: float = 3.0, info=None) -> None:
        super().__init__(k, info)
        self.out = out

    def calibrate(self, x, y) -> None:
        super().calibrate(x, y)
        rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
        torch.save({"x": x, **self.state_dict()}, Path(self.out) / f"calibration_rank{rank}.pt")


@hookimpl
def ganforge_register_constraints(register) -> None:
    register("recorded-sigma", RecordedSigma)
'''


@pytest.mark.distributed
def test_two_ranks_calibrate_alike_and_agree_bit_for_bit(tmp_path) -> None:
    from test_strategy import SMALL, Ranks, assert_identical_across_ranks, clean_env, run_worker, tail

    site = make_fake_distribution(tmp_path / "site", "ganforge-sigma",
                                  {"ganforge_sigma": docs_constraint_example(), "ganforge_probe": PROBE},
                                  {"sigma": "ganforge_sigma", "probe": "ganforge_probe"})
    out = tmp_path / "out"
    out.mkdir()
    job = {"tag": "constrained", "overrides": SMALL + [
        "objective.name=constrained", "objective.calibration_samples=500",
        f"objective.constraints=[{{name: recorded-sigma, out: '{out}', k: 2.0}}, {{name: norm-range, low: 0.9, "
        "high: 1.1, weight: 0.5}]", "train.max_steps=30", "train.log_every_n_steps=10"]}
    rc, log = run_worker([job], out, env=clean_env(PYTHONPATH=str(site)))
    if rc != 0:
        pytest.fail(f"the distributed worker exited with {rc}; log tail:\n{tail(log)}")
    ranks = Ranks(out, "constrained")
    ranks.assert_ok(log)
    assert_identical_across_ranks(ranks)
    c0, c1 = (torch.load(out / f"calibration_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert c0["x"].shape[0] == 500  # the first calibration_samples of the seeded permutation, on every rank
    for key in ("x", "mean", "std"):
        assert torch.equal(c0[key], c1[key]), key
    (run,) = {Path(s["run_dir"]) for s in ranks.states}
    assert json.loads((run / "constraints.json").read_text())["calibrated_on"] == 500
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r.get("train/constraint/recorded-sigma")] == [10, 20, 30]


def test_a_misspelt_hook_or_a_constraint_without_penalty_is_named() -> None:
    import types

    from ganforge import hookimpl, load_registry
    from ganforge.registry.errors import PluginError

    typo = types.ModuleType("typo_plugin")
    typo.ganforge_register_constraint = hookimpl(lambda register: None)  # missing the s
    with pytest.raises(PluginError, match="'ganforge_register_constraint' is not a ganforge hook; did you mean "
                                          "'ganforge_register_constraints'"):
        load_registry(extra=[("typo-plugin", typo)], strict=True, warn=False)

    class NoPenalty:
        def __init__(self, info: Any = None) -> None:
            pass

    odd = types.ModuleType("odd_plugin")
    odd.ganforge_register_constraints = hookimpl(lambda register: register("no-penalty", NoPenalty))
    reg = load_registry(extra=[("odd-plugin", odd)], strict=True, warn=False)
    with pytest.raises(Exception, match=r"constraint 'no-penalty' \(from plugin 'odd-plugin'.*\) is invalid: "
                                        r"constraint must define penalty"):
        reg.build("constraint", {"name": "no-penalty"}, "objective.constraints[0]", info=POINTS)


def test_weight_zero_trains_exactly_as_the_base_objective(tmp_path) -> None:
    """The wrapper adds nothing but its penalties: with every weight 0 the run is the base's, bit for bit."""
    common = [*TINY, "train.max_steps=10", "objective.name=hinge"]
    assert cli.main(["fit", *common, f"root_dir={tmp_path / 'plain'}"]) == 0
    assert cli.main(["fit", *common, f"root_dir={tmp_path / 'watched'}", "objective.name=constrained",
                     "objective.base=hinge", "objective.constraints=[{name: norm-range, low: 0.97, high: 1.03, "
                     "weight: 0}]"]) == 0
    (a,), (b,) = ((tmp_path / d).glob("*/*/checkpoints/last.ckpt") for d in ("plain", "watched"))
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    assert sa.keys() == sb.keys() and all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_constrained_goes_outside_the_other_wrappers() -> None:
    ring = {"name": "norm-range", "low": 0.5, "high": 1.5}
    with pytest.raises(ConfigError, match=r"'constrained' goes outside unrolled.*objective=\{name: constrained, base: "
                                          r"unrolled"):
        build("objective", {"name": "unrolled", "base": "constrained"})
    labelled = DataInfo(sample_shape=(2,), num_classes=3, name="labelled")
    with pytest.raises(ConfigError, match=r"'constrained' goes outside acgan"):
        build("objective", {"name": "acgan", "base": "constrained"}, labelled)
    outer = constrained(ring, base="unrolled", base_params={"steps": 1})
    assert outer.needs_double_backward and outer.inner.steps == 1
    torch.manual_seed(0)
    D, G = _D(), torch.nn.Linear(3, 2)
    out = outer.generator_loss(D, torch.randn(8, 2), G(torch.randn(8, 3)), None)
    assert "unrolled_d_loss" in out.logs and "constraint/norm-range" in out.run_logs
    acgan = constrained(ring, base="acgan", info=labelled)
    assert acgan.inner.class_weight == 1.0


def test_a_calibrated_state_that_a_checkpoint_cannot_hold_is_refused_at_calibration() -> None:
    import types

    from ganforge import hookimpl, load_registry

    class NumpyState:
        def __init__(self, info: Any = None) -> None:
            self.m = None

        def calibrate(self, x, y) -> None:
            self.m = x.mean(0).numpy()

        def state_dict(self) -> dict[str, Any]:
            return {"mean": self.m}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.m = state["mean"]

        def penalty(self, fake, y):
            return fake.new_zeros(fake.shape[0])

    mod = types.ModuleType("numpy_state_plugin")
    mod.ganforge_register_constraints = hookimpl(lambda register: register("numpy-state", NumpyState))
    reg = load_registry(extra=[("numpy-state-plugin", mod)], warn=False)
    c = reg.build("constraint", {"name": "numpy-state"}, info=POINTS)
    assert isinstance(c, CalibratedConstraint)
    from ganforge_plugins.objectives.constrained import Constrained

    obj = Constrained.__new__(Constrained)  # the registry's constraint, without the process-wide lookup
    obj.entries, obj.constraints = [{"id": "m", "name": "numpy-state", "weight": 1.0, "params": {}}], [c]
    with pytest.raises(ValueError, match=r"constraint 'numpy-state' \(objective.constraints id 'm'\): its state_dict\(\) "
                                         r"holds a numpy.ndarray at state\['mean'\]; checkpoints hold plain data"):
        obj.calibrate(torch.randn(10, 2), None)
