"""Config: YAML + overrides → validated, resolved config; every bad input names key, value and fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ganforge.run.config import apply_overrides, load_config
from ganforge.registry.errors import ConfigError


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
        (["train.foo=1"], r"train.foo: unknown parameter of section 'train'\. Valid parameters: batch_size"),
        (["samples.evry_n_steps=1"], r"samples.evry_n_steps: unknown parameter of section 'samples'\. Did you mean 'every_n"),
        (["optim.generator.betaz=1"], r"optim.generator.betaz: unknown parameter of the optimizer\. Did you mean 'betas'"),
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
    from ganforge.run.runner import build_components

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
    from ganforge.cli.commands import main

    assert main(["config", "show", "--strict-plugins", "seed=3", "-c", "grid25", "train.max_steps=7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["seed"] == 3 and cfg["train"]["max_steps"] == 7 and cfg["name"] == "grid25"


# -- validation before anything starts (issue 11): each bad value next to a good one -------------------


@pytest.mark.parametrize(
    "bad, message, good",
    [
        ("optim.generator.lr=-0.001", r"^optim.generator.lr: must be >= 0, got -0.001\.$", "optim.generator.lr=0.001"),
        ("optim.discriminator.lr=.nan", r"^optim.discriminator.lr: must be a finite number >= 0, got nan\.$",
         "optim.discriminator.lr=0"),
        ("optim.generator.lr=nan", r"^optim.generator.lr: must be a finite number >= 0, got 'nan'\.$",
         "optim.generator.lr=1e-3"),
        ("optim.generator.betas=[0.5,1.0]", r"betas: must be in \[0.0, 1.0\), got \[0.5, 1.0\]",
         "optim.generator.betas=[0.0,0.99]"),
        ("train.max_steps=-1", r"^train.max_steps: must be >= 0, got -1\.$", "train.max_steps=0"),
        ("train.checkpoint_every_n_steps=-5", r"^train.checkpoint_every_n_steps: must be >= 0, got -5\.$",
         "train.checkpoint_every_n_steps=0"),
        ("metrics.every_n_steps=-1", r"^metrics.every_n_steps: must be >= 0, got -1\.$", "metrics.every_n_steps=0"),
        ("train.num_workers=-2", r"^train.num_workers: must be >= 0, got -2\.$", "train.num_workers=0"),
        ("train.ema_halflife_images=.nan", r"^train.ema_halflife_images: must be a finite number > 0, got nan\.$",
         "train.ema_halflife_images=500"),
        ("train.ema_halflife_images=.inf", r"must be a finite number > 0, got inf", "train.ema_halflife_images=null"),
        ("train.batch_size=0", r"^train.batch_size: must be > 0, got 0\.$", "train.batch_size=1"),
        ("train.lr_decay_start=1.0", r"^train.lr_decay_start: must be in \[0.0, 1.0\), got 1.0\.$",
         "train.lr_decay_start=0.0"),
        ("seed=-1", r"^seed: must be in \[0, 4294967295\] \(numpy's seed range\), got -1\.$", "seed=0"),
        ("seed=4294967296", r"^seed: must be in \[0, 4294967295\].*got 4294967296\.$", "seed=4294967295"),
        ("trainer.devices=0", r"^trainer.devices: must be >= 1, -1 \(all\) or 'auto', got 0\.$", "trainer.devices=1"),
        ("trainer.devices=-2", r"^trainer.devices: must be >= 1, -1 \(all\) or 'auto', got -2\.$", "trainer.devices=-1"),
        ("trainer.devices='0'", r"^trainer.devices: must be >= 1, -1 \(all\) or 'auto', got '0'\.$",
         "trainer.devices=auto"),
    ],
)
def test_bad_numbers_fail_at_resolution_next_to_good_ones(registry, bad, message, good):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [bad], registry)
    key, _, value = good.partition("=")
    cfg = load_config(None, [good], registry)
    node = cfg
    for part in key.split("."):
        node = node[part]
    expected = yaml.safe_load(value)
    if isinstance(expected, str) and expected != "auto":
        expected = float(expected)  # YAML 1.1 reads 1e-3 as a string; the config coerces it
    assert node == expected


def test_duplicate_yaml_keys_name_file_line_and_key(tmp_path, registry):
    from ganforge.run.config import default_config_text

    base = default_config_text()
    dup = tmp_path / "dup.yaml"
    dup.write_text(base + "\ntrain:\n  max_steps: 5\n")  # a second top-level `train:`
    first = next(i for i, line in enumerate(base.splitlines(), 1) if line.startswith("train:"))
    second = len(base.splitlines()) + 2
    with pytest.raises(ConfigError, match=rf"^{dup}:{second}: duplicate key 'train' \(first set on line {first}\); "
                                          r"YAML would silently keep the last one"):
        load_config(str(dup), [], registry)
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: a\nseed: 1\noptim:\n  generator:\n    lr: 0.1\n    lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"^{nested}:6: duplicate key 'lr' \(first set on line 5\)"):
        load_config(str(nested), [], registry)
    # merges may override the keys they bring in: not a duplicate
    data = {k: v for k, v in yaml.safe_load(base).items() if k != "optim"}
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(data) + "optim:\n  generator: &g {name: adam, lr: 0.001}\n"
                      "  discriminator:\n    <<: *g\n    lr: 0.002\n")
    cfg = load_config(str(merged), [], registry)
    assert cfg["optim"]["discriminator"]["lr"] == 0.002 and cfg["optim"]["generator"]["lr"] == 0.001


def test_non_utf8_config_names_the_file_and_byte(tmp_path, registry):
    from ganforge.run.config import default_config_text

    good = tmp_path / "good.yaml"
    good.write_text(default_config_text().replace("name: ring8", "name: café"), encoding="utf-8")
    assert load_config(str(good), [], registry)["name"] == "café"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"seed: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: not a UTF-8 text file \(byte 17 on line 2 is 0xe9\); "
                                          r"save the config as UTF-8\.$"):
        load_config(str(bad), [], registry)


def test_gpu_accelerator_without_a_gpu_fails_before_the_trainer(registry, monkeypatch, tiny):
    import torch

    from ganforge.run.config import check_hardware
    from ganforge.run.runner import fit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = load_config(None, tiny + ["trainer.accelerator=gpu"], registry)  # a config may be meant for another machine
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu: no CUDA GPU is visible on this machine; use "
                                          r"trainer.accelerator=cpu, or auto"):
        fit(cfg)
    assert not (cfg["root_dir"] and __import__("pathlib").Path(cfg["root_dir"]).exists())  # nothing started
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=cuda: no CUDA GPU"):
        check_hardware({"accelerator": "cuda", "devices": 1})
    check_hardware({"accelerator": "cpu", "devices": 1})  # the good values next to it
    check_hardware({"accelerator": "auto", "devices": 1})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_hardware({"accelerator": "gpu", "devices": 2})
    with pytest.raises(ConfigError, match=r"^trainer.devices=4: only 2 CUDA GPUs visible; use trainer.devices=2"):
        check_hardware({"accelerator": "gpu", "devices": 4})
    check_hardware({"accelerator": "gpu", "devices": "0,1"})  # index lists: the string form too
    for bad in ("0,5", [0, 5]):
        with pytest.raises(ConfigError, match=r"^trainer.devices=.*GPU indices must be in 0..1 on this machine"):
            check_hardware({"accelerator": "gpu", "devices": bad})


def test_gpu_accelerator_without_a_gpu_is_one_line_from_the_cli(tmp_path):
    import os

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-m", "ganforge", "fit", "trainer.accelerator=gpu",
                          f"root_dir={tmp_path}"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("ganforge: error: trainer.accelerator=gpu: no CUDA GPU is visible on this machine "
                                  "(CUDA_VISIBLE_DEVICES=''); use trainer.accelerator=cpu, or auto to take a GPU "
                                  "when there is one.")
    zero = subprocess.run([sys.executable, "-m", "ganforge", "fit", "trainer.devices=0", f"root_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert zero.returncode == 2 and "Traceback" not in zero.stderr
    assert "ganforge: error: trainer.devices: must be >= 1, -1 (all) or 'auto', got 0." in zero.stderr


def test_trainer_values_lightning_refuses_are_one_line_naming_the_trainer_section(registry, tiny, tmp_path):
    from ganforge.run.runner import fit

    cfg = load_config(None, tiny + ["trainer.strategy=bogus"], registry)
    with pytest.raises(ConfigError, match=r"^trainer: lightning.Trainer refused these settings \(trainer.accelerator="
                                          r"'auto', trainer.devices=1, trainer.strategy='bogus'\): You selected an "
                                          r"invalid strategy name"):
        fit(cfg, progress=False)
    good = fit(load_config(None, tiny + ["trainer.strategy=auto", "train.max_steps=2"], registry), progress=False)
    assert good["module"].g_steps == 2


def test_fit_and_sample_evaluate_ask_one_hardware_probe(monkeypatch):
    from ganforge.cli.sample_evaluate import check_device
    from ganforge.run import hardware
    from ganforge.run.config import check_hardware

    monkeypatch.setattr(hardware, "probe", lambda: hardware.Hardware(cuda=1, mps=False, visible="3"))
    with pytest.raises(ConfigError, match=r"^trainer.devices=2: only 1 CUDA GPU visible \(CUDA_VISIBLE_DEVICES='3'\); "
                                          r"use trainer.devices=1"):
        check_hardware({"accelerator": "gpu", "devices": 2})
    check_hardware({"accelerator": "gpu", "devices": 1})
    with pytest.raises(ConfigError, match=r"^--device cuda:1: only 1 CUDA GPU visible \(cuda:0..cuda:0\)\.$"):
        check_device("--device", "cuda:1")
    check_device("--device", "cuda:0")
    with pytest.raises(ConfigError, match=r"^--device mps: Apple's MPS backend is not available here; use --device cpu"):
        check_device("--device", "mps")
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=mps: Apple's MPS backend is not available"):
        check_hardware({"accelerator": "mps"})
    monkeypatch.setattr(hardware, "probe", lambda: hardware.Hardware(cuda=0, mps=True, visible=None))
    check_device("--device", "mps")
    check_hardware({"accelerator": "gpu", "devices": 1})  # Lightning's gpu takes MPS too
    with pytest.raises(ConfigError, match=r"^--device cuda: no CUDA GPU is visible on this machine; use --device cpu"):
        check_device("--device", "cuda")
