"""Config: YAML + overrides → validated, resolved config; every bad input names key, value and fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ganforge.config import apply_overrides, load_config
from ganforge.plugins import ConfigError


def test_default_config_resolves_with_all_defaults(registry):
    cfg = load_config(None, [], registry)
    assert cfg["name"] == "ring8"
    assert cfg["dataset"]["name"] == "gaussian-ring" and cfg["dataset"]["num_modes"] == 8
    assert cfg["dataset"]["std"] == 0.01 and cfg["dataset"]["radius"] == 1.0
    assert cfg["metrics"]["list"][0]["name"] == "mode-coverage"
    assert cfg["trainer"]["devices"] == 1
    assert "lr" in cfg["optim"]["generator"]


def test_overrides_change_nested_values_and_component_names(registry):
    cfg = load_config("grid25", ["objective.name=wgan-gp", "train.max_steps=500", "optim.generator.lr=1e-3"], registry)
    assert cfg["objective"]["name"] == "wgan-gp" and cfg["objective"]["gp_weight"] == 10.0
    assert cfg["train"]["max_steps"] == 500
    assert cfg["optim"]["generator"]["lr"] == pytest.approx(1e-3)  # YAML reads 1e-3 as a string; coerced
    assert cfg["dataset"]["name"] == "gaussian-grid"


def test_list_overrides():
    data = apply_overrides({"metrics": {"list": [{"name": "a"}]}}, ["metrics.list.0.num_samples=5", "metrics.list.1.name=b"])
    assert data["metrics"]["list"] == [{"name": "a", "num_samples": 5}, {"name": "b"}]
    with pytest.raises(ConfigError, match=r"index 5 out of range \(list has 1 items\)"):
        apply_overrides({"l": [1]}, ["l.5=2"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["objective.name=wgan_gp"], r"objective.name: unknown objective 'wgan_gp'. Did you mean 'wgan-gp'"),
        (["generator.widht=64"], r"generator.widht: unknown parameter of generator 'mlp'. Did you mean 'width'\? Valid parameters: .*width"),
        (["generator.width=wide"], r"generator.width: expected int, got 'wide' \(str\)"),
        (["train.batch_size=1.5"], r"train.batch_size: expected int, got 1.5 \(float\)"),
        (["train.on_nonfinite=ignore"], r"train.on_nonfinite: expected 'stop' \| 'skip', got 'ignore'"),
        (["optim.generator.name=adagrad"], r"optim.generator.name: expected 'adam' \| 'adamw' \| 'rmsprop' \| 'sgd'"),
        (["trainer.max_steps=10"], r"trainer.max_steps: managed by ganforge — use train.max_steps"),
        (["trainer.devicez=2"], r"trainer.devicez: not an argument of lightning.Trainer. Did you mean 'devices'"),
        (["trainer.benchmark=maybe"], r"trainer.benchmark: expected .*bool.*, got 'maybe'"),
        (["trian.max_steps=3"], r"unknown section 'trian'. Did you mean 'train'"),
        (["metrics.list.0.name=mode-coverag"], r"metrics.list\[0\].name: unknown metric 'mode-coverag'. Did you mean 'mode-coverage'"),
        (["logger=tensorboard"], r"logger.name: unknown logger 'tensorboard'"),
        (["train.max_steps=null"], r"set train.max_steps \(generator steps\) or train.max_images"),
        (["seed=abc"], r"seed: expected int, got 'abc'"),
        (["train.max_steps"], r"override 'train.max_steps': expected key.path=value"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_fix(registry, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides, registry)


def test_missing_file_and_yaml_syntax_errors_name_file_and_line(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"config file 'nope.yaml' not found \(relative to "):
        load_config("nope.yaml", [], registry)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  batch_size: 4\n   max_steps: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"{bad}:4:\d+: YAML syntax error"):
        load_config(str(bad), [], registry)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections at the top level, got list"):
        load_config(str(notmap), [], registry)


def test_missing_component_section(tmp_path, registry):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"dataset": {"name": "gaussian-ring"}, "generator": "mlp", "discriminator": "mlp"}))
    with pytest.raises(ConfigError, match=r"missing section 'objective' \(e.g. objective: \{name: ...\}\); registered: .*hinge"):
        load_config(str(f), [], registry)


def test_component_factory_errors_are_wrapped_with_the_config_path(tmp_path, registry):
    from ganforge.run import build_components

    cfg = load_config(None, ["dataset.name=tensor-file", f"dataset.path={tmp_path}/missing.npz"], registry)
    with pytest.raises(ConfigError, match=r"dataset \(dataset 'tensor-file' from plugin 'tensor-file' \(ganforge .*missing.npz"):
        build_components(cfg, registry)


def test_config_show_prints_the_resolved_config():
    out = subprocess.run([sys.executable, "-m", "ganforge", "config", "show", "-c", "grid25", "objective.name=hinge"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["objective"]["name"] == "hinge" and cfg["dataset"]["name"] == "gaussian-grid"
    bad = subprocess.run([sys.executable, "-m", "ganforge", "config", "show", "objective.name=hing"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "ganforge: error: objective.name: unknown objective 'hing'. Did you mean 'hinge'" in bad.stderr


def test_overrides_may_follow_options(capsys):
    from ganforge.cli import main

    assert main(["config", "show", "--strict-plugins", "seed=3", "-c", "grid25", "train.max_steps=7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["seed"] == 3 and cfg["train"]["max_steps"] == 7 and cfg["name"] == "grid25"
