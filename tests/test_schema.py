"""The schema from a factory's signature: nested components (ComponentRef), one validation, conversion only
when building from a resolved config, and effective defaults written into the resolved config."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
from ganforge.run.config import load_config

NESTED = {
    "nested_mod": """
        from pathlib import Path
        from typing import Annotated, Any, Optional
        from ganforge import hookimpl, Objective
        from ganforge.registry.schema import ComponentRef

        GANFORGE_PLUGIN_API = 2

        class Wrapper(Objective):
            weight_clip = None

            def __init__(self, inner: Annotated[str, ComponentRef("objective", params="inner_params")] = "wgan-gp",
                         inner_params: Optional[dict[str, Any]] = None,
                         extractor: Annotated[str, ComponentRef("feature_extractor")] = "identity",
                         where: Path = Path("out"), betas: tuple[float, float] = (0.5, 0.9)):
                self.inner, self.inner_params, self.extractor, self.where, self.betas = (
                    inner, inner_params, extractor, where, betas)

        def bad_kind(x: Annotated[str, ComponentRef("widget")] = "a"):
            return Wrapper()

        def bad_params(x: Annotated[str, ComponentRef("objective", params="nope")] = "hinge"):
            return Wrapper()

        @hookimpl
        def ganforge_register_objectives(register):
            register("wrapper", Wrapper)
            register("bad-kind", bad_kind)
            register("bad-params", bad_params)
    """
}


@pytest.fixture
def nested_registry(fake_plugins):
    fake_plugins("ganforge-nested", NESTED, {"nested": "nested_mod"})
    return load_registry(warn=False)


def test_nested_component_defaults_are_filled_at_config_time(nested_registry):
    cfg = load_config(None, ["objective.name=wrapper", "objective.inner_params.gp_weight=5"], nested_registry)
    obj = cfg["objective"]
    assert obj["inner"] == "wgan-gp" and obj["extractor"] == "identity"
    assert obj["inner_params"]["gp_weight"] == 5.0 and obj["inner_params"]["n_critic"] == 5  # the default shown
    assert obj["where"] == "out" and obj["betas"] == [0.5, 0.9]  # YAML-friendly in the resolved config


@pytest.mark.parametrize("overrides, message", [
    (["objective.inner=wgan_gp"], r"objective.inner: unknown objective 'wgan_gp'. Did you mean 'wgan-gp'"),
    (["objective.inner_params.gp_wieght=5"], r"objective.inner_params.gp_wieght: unknown parameter of objective "
                                             r"'wgan-gp'. Did you mean 'gp_weight'"),
    (["objective.inner_params.gp_weight=lots"], r"objective.inner_params.gp_weight: expected float, got 'lots'"),
    (["objective.inner_params=3"], r"objective.inner_params: expected dict"),
    (["objective.extractor=inceptoin-v3"], r"objective.extractor: unknown feature extractor 'inceptoin-v3'. "
                                           r"Did you mean 'inception-v3'"),
])
def test_nested_component_errors_name_the_nested_key(nested_registry, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["objective.name=wrapper", *overrides], nested_registry)


def test_a_malformed_component_ref_is_refused_at_registration(nested_registry):
    errors = {f.error for f in nested_registry.failures}
    assert any("objective 'bad-kind': parameter 'x': ComponentRef kind 'widget' is not a component kind" in e
               for e in errors), errors
    assert any("objective 'bad-params': parameter 'x': its ComponentRef's params='nope' is not a parameter" in e
               for e in errors), errors
    assert "wrapper" in nested_registry.names("objective")
    types = {p.name: p.type_name for p in nested_registry.get("objective", "wrapper").parameters()}
    assert types["inner"] == "str (a registered objective)"  # what `ganforge plugins` and docs/config.md show
    assert types["extractor"] == "str (a registered feature extractor)"


def test_create_converts_a_resolved_entry_without_validating_again(nested_registry):
    from ganforge.registry import schema

    cfg = load_config(None, ["objective.name=wrapper"], nested_registry)
    calls = []
    real = schema.validate_params
    import ganforge.registry.registry as registry_mod

    registry_mod.validate_params = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        obj = nested_registry.create("objective", cfg["objective"], "objective")
    finally:
        registry_mod.validate_params = real
    assert calls == []  # validated once, by resolution
    assert obj.where == Path("out") and obj.betas == (0.5, 0.9)  # converted back to the annotations
    with pytest.raises(ConfigError, match=r"objective.betas: expected tuple\[float, float\], got 'x' .*edited"):
        nested_registry.create("objective", {**cfg["objective"], "betas": "x"}, "objective")
    with pytest.raises(ConfigError, match=r"objective.colour: not a parameter of objective 'wrapper'"):
        nested_registry.create("objective", {**cfg["objective"], "colour": 1}, "objective")


def test_build_from_a_raw_spec_still_validates(nested_registry):
    with pytest.raises(ConfigError, match=r"objective.inner_params.gp_weight: expected float"):
        nested_registry.build("objective", {"name": "wrapper", "inner_params": {"gp_weight": "x"}})
    assert nested_registry.build("objective", "wrapper").inner_params["gp_weight"] == 10.0


def test_acgan_base_params_show_the_base_objectives_defaults(registry):
    cfg = load_config("digits-cgan", ["objective.name=acgan", "objective.base=wgan-gp"], registry)
    assert cfg["objective"]["base_params"]["gp_weight"] == 10.0
    with pytest.raises(ConfigError, match=r"objective.base_params.gp_wieght: unknown parameter"):
        load_config("digits-cgan", ["objective.name=acgan", "objective.base=wgan-gp",
                                    "objective.base_params.gp_wieght=1"], registry)


def test_trainer_values_are_stored_converted(registry):
    cfg = load_config(None, ["trainer.limit_train_batches=5e-1"], registry)  # YAML 1.1 reads 5e-1 as a string
    assert cfg["trainer"]["limit_train_batches"] == 0.5 and isinstance(cfg["trainer"]["limit_train_batches"], float)


@pytest.mark.parametrize("overrides, every", [
    ([], None),  # ring8: metrics.every_n_steps
    (["metrics.every_n_steps=0", "train.max_steps=300"], 30),
    (["metrics.every_n_steps=0", "train.max_steps=null", "train.max_images=1000"], 1000),
    (["samples.every_n_steps=7"], 7),
])
def test_samples_every_n_steps_is_decided_in_the_resolved_config(registry, overrides, every):
    cfg = load_config(None, overrides, registry)
    assert cfg["samples"]["every_n_steps"] == (every or cfg["metrics"]["every_n_steps"]) > 0


def test_config_yaml_says_what_ran_and_a_resume_sees_no_change(registry, tiny):
    import yaml

    from ganforge.run.runner import fit

    cfg = load_config(None, tiny + ["samples.num_samples=0"], registry)
    out = fit(cfg, progress=False, registry=registry)
    written = yaml.safe_load((out["run_dir"] / "config.yaml").read_text())
    assert written["samples"]["num_samples"] == 1000  # points: the fallback decided at run time, written back
    assert written["samples"]["every_n_steps"] == cfg["samples"]["every_n_steps"] > 0
    assert "strategy" not in written["trainer"]  # one process: Lightning's own choice, nothing decided
    more = load_config(None, tiny + ["samples.num_samples=0", f"train.max_steps={cfg['train']['max_steps'] + 2}"],
                       registry)
    fit(more, resume=str(out["run_dir"] / "checkpoints" / "last.ckpt"), progress=False, registry=registry)
    import json

    segments = [json.loads(line) for line in (out["run_dir"] / "segments.jsonl").read_text().splitlines()]
    assert segments[-1]["config"] == "config.segment_1.yaml"  # train.max_steps changed ...
    assert list(segments[-1]["changes"]) == ["train.max_steps"]  # ... and nothing else
    again = yaml.safe_load((out["run_dir"] / "config.segment_1.yaml").read_text())
    assert again["samples"]["num_samples"] == 1000  # ... and the decided default is the same number


def test_a_nested_name_from_a_broken_plugin_points_at_it(fake_plugins):
    fake_plugins("ganforge-broken-ex", {"broken_ex": "raise ImportError('no weights module')\n"}, {"broken-ex": "broken_ex"})
    reg = load_registry(warn=False)
    with pytest.raises(ConfigError, match=r"metrics.list\[0\].feature_extractor: unknown feature extractor 'my-ex'.*"
                                          r"plugins that failed to load: broken-ex; see `ganforge plugins`"):
        load_config(None, ["metrics.list=[{name: fid, feature_extractor: my-ex}]"], reg)


def test_the_ddp_strategy_chosen_for_several_processes_is_written_into_the_config(registry, tiny, tmp_path):
    from ganforge.run.runner import build_components, make_trainer

    cfg = load_config(None, tiny + ["trainer.accelerator=cpu", "trainer.devices=2"], registry)
    assert "strategy" not in cfg["trainer"]  # nothing decided at resolution: the world size is known at launch
    trainer = make_trainer(cfg, tmp_path, build_components(cfg, registry), {}, progress=False)
    assert cfg["trainer"]["strategy"] == "gan_ddp"  # what config.yaml will say
    assert type(trainer.strategy).__name__ == "GANDDPStrategy"
    one = load_config(None, tiny + ["trainer.accelerator=cpu", "trainer.devices=1"], registry)
    make_trainer(one, tmp_path, build_components(one, registry), {}, progress=False)
    assert "strategy" not in one["trainer"]


@pytest.mark.parametrize("low_open,high_open,text,inside,outside", [
    (False, False, "in [0.0, 1.0]", [0.0, 0.5, 1.0], [-0.1, 1.1, float("nan")]),
    (False, True, "in [0.0, 1.0)", [0.0, 0.5], [1.0, float("inf")]),
    (True, False, "in (0.0, 1.0]", [0.5, 1.0], [0.0]),
    (True, True, "in (0.0, 1.0)", [1e-9, 0.5], [0.0, 1.0]),
])
def test_range_ends_are_open_or_closed_as_declared(low_open, high_open, text, inside, outside):
    from ganforge.registry.bounds import Range

    r = Range(0.0, 1.0, low_open=low_open, high_open=high_open)
    assert r.text == text
    assert all(r(v) for v in inside) and not any(r(v) for v in outside)


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "-0.2", ".nan"])
def test_class_coverage_confidence_is_checked_at_config_time_with_its_key(registry, bad):
    with pytest.raises(ConfigError, match=r"metrics\.list\[0\]\.confidence.*in \(0\.0, 1\.0\)"):
        load_config("stacked-digits", [f"metrics.list=[{{name: class-coverage, confidence: {bad}}}]"], registry)
    assert load_config("stacked-digits", ["metrics.list=[{name: class-coverage, confidence: 0.5}]"],
                       registry)["metrics"]["list"][0]["confidence"] == 0.5
