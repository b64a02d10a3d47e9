"""The command line end to end: the embedded default from any directory, an image run, and
`ganforge sample` / `ganforge evaluate` on a checkpoint produced here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GANFORGE = [sys.executable, "-m", "ganforge"]


def run(args, cwd, timeout=600):
    env = dict(os.environ, GANFORGE_PROGRESS="0")
    env.pop("GANFORGE_RUN_DIR", None)
    out = subprocess.run(GANFORGE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return out


def test_fit_without_config_runs_the_embedded_default_from_any_directory(tmp_path):
    out = run(["fit", "train.max_steps=30", "metrics.every_n_steps=15", "train.batch_size=64",
               "dataset.num_samples=3000", "metrics.list.0.num_samples=400"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ring8" / "version_0"
    assert "ganforge: run directory runs/ring8/version_0 (1 process, strategy" in out.stdout
    text = " ".join(out.stdout.split())  # the table title wraps
    assert "final metrics after 30 generator steps" in text
    assert "mode-coverage/modes" in out.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counters"]["g_steps"] == 30
    png = Image.open(run_dir / "samples" / "progress.png")
    assert png.width > 2 * png.height  # several panels side by side


@pytest.fixture(scope="module")
def cgan_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("cgan")
    out = run(["fit", "-c", "digits-cgan", "dataset.resolution=8", "generator.width=8", "discriminator.width=8",
               "train.max_steps=6", "train.batch_size=32", "metrics.every_n_steps=3",
               "metrics.list.0.num_samples=200", "metrics.list.1.num_samples=200", f"root_dir={root}"], cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = root / "digits-cgan" / "version_0"
    return run_dir / "checkpoints" / "last.ckpt"


def test_image_run_writes_grids_and_conditional_metrics(cgan_ckpt):
    run_dir = cgan_ckpt.parent.parent
    grid = Image.open(run_dir / "samples" / "step_0000006.png")
    assert grid.width >= 64 and grid.height >= 64
    summary = json.loads((run_dir / "summary.json").read_text())
    cc = summary["metrics"]["class-coverage"]
    assert "class_accuracy" in cc["values"] and cc["protocol"]["classifier"] == "digits-cnn"
    assert summary["metrics"]["fid"]["protocol"]["dtype"] == "float64"


def test_sample_writes_grid_single_images_and_npz(cgan_ckpt, tmp_path):
    out = run(["sample", str(cgan_ckpt), "--num", "12", "--class", "3", "--out", str(tmp_path / "s")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote 12 samples (EMA generator, seed 0)" in out.stdout
    data = np.load(tmp_path / "s" / "samples.npz", allow_pickle=False)
    assert data["x"].shape == (12, 1, 8, 8) and (data["y"] == 3).all()
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 12
    assert (tmp_path / "s" / "grid.png").is_file()
    bad = run(["sample", str(cgan_ckpt), "--class", "10", "--out", str(tmp_path / "t")], cwd=tmp_path)
    assert bad.returncode == 2 and "--class 10: out of range; classes are 0..9" in bad.stderr
    missing = run(["sample", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "t")], cwd=tmp_path)
    assert missing.returncode == 2 and "nope.ckpt' not found" in missing.stderr


def test_evaluate_prints_values_with_protocols_and_saves_the_neighbour_picture(cgan_ckpt, tmp_path):
    out = run(["evaluate", str(cgan_ckpt), "--metrics", "fid,class-coverage,nearest-neighbours",
               "--set", "fid.feature_extractor=digits-cnn", "--set", "nearest-neighbours.num_samples=4",
               "--num-samples", "300", "--json", str(tmp_path / "e.json")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fid: fid=" in out.stdout and "protocol:" in out.stdout and "class_accuracy=" in out.stdout
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["metrics"]["fid"]["protocol"]["feature_extractor"] == "digits-cnn"
    assert res["metrics"]["fid"]["protocol"]["num_samples"] == 300
    fig = Path(res["metrics"]["nearest-neighbours"]["figure"])
    assert res["metrics"]["nearest-neighbours"]["protocol"]["num_samples"] == 4  # its own --set wins
    img = Image.open(fig)
    assert fig.is_file() and 0 < img.height < 2 * img.width  # 4 rows of 1 + k images
    import numpy as np

    header = np.asarray(img.convert("L"))[:20]
    assert header.min() < 100 and (header > 200).mean() > 0.8  # a labelled header: "sample", "nearest ..."
    bad = run(["evaluate", str(cgan_ckpt), "--metrics", "fidd"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown metric 'fidd'. Did you mean 'fid'" in bad.stderr


# -- bad arguments and misbehaving metrics (issue 11): one line, no traceback ---------------------------


def test_sample_arguments_are_checked_before_the_checkpoint_is_read(cgan_ckpt, tmp_path):
    env_cpu = {"CUDA_VISIBLE_DEVICES": ""}
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    cases = [
        (["--num", "0"], "ganforge: error: --num 0: the number of samples must be >= 1."),
        (["--num", "-5"], "ganforge: error: --num -5: the number of samples must be >= 1."),
        (["--out", str(a_file)], f"ganforge: error: --out {a_file}: '{a_file}' is a file, not a directory"),
        (["--out", str(a_file / "sub")], f"ganforge: error: --out {a_file / 'sub'}: '{a_file}' is a file"),
        (["--device", "cuda"], "ganforge: error: --device cuda: no CUDA GPU is visible on this machine; use --device cpu."),
        (["--device", "gpu0"], "ganforge: error: --device gpu0: not a device; use cpu, cuda or cuda:<index>."),
        (["--seed", "-1"], "ganforge: error: --seed -1: must be in [0, 4294967295]."),
    ]
    for extra, message in cases:
        args = ["sample", str(cgan_ckpt), "--out", str(tmp_path / "ok"), *extra]
        out = run_env(args, tmp_path, env_cpu)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (extra, out.stderr[-2000:])
        assert out.stderr.strip().startswith(message), (extra, out.stderr)
    assert not (tmp_path / "ok").exists()
    good = run_env(["sample", str(cgan_ckpt), "--num", "1", "--seed", "4294967295", "--device", "cpu",
                    "--out", str(tmp_path / "ok")], tmp_path, env_cpu)
    assert good.returncode == 0, good.stderr[-2000:]
    assert np.load(tmp_path / "ok" / "samples.npz")["x"].shape[0] == 1
    bad_eval = run_env(["evaluate", str(cgan_ckpt), "--num-samples", "0"], tmp_path, env_cpu)
    assert bad_eval.returncode == 2 and bad_eval.stderr.strip() == "ganforge: error: --num-samples 0: must be >= 1."
    cuda_eval = run_env(["evaluate", str(cgan_ckpt), "--device", "cuda:0"], tmp_path, env_cpu)
    assert cuda_eval.returncode == 2 and "--device cuda:0: no CUDA GPU is visible" in cuda_eval.stderr


def run_env(args, cwd, extra_env, timeout=600):
    env = dict(os.environ, GANFORGE_PROGRESS="0", **extra_env)
    env.pop("GANFORGE_RUN_DIR", None)
    return subprocess.run(GANFORGE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


BAD_METRIC = {
    "badmetric_mod": """
        from typing import Literal
        import torch
        from ganforge import hookimpl, GANMetric

        GANFORGE_PLUGIN_API = 2

        class Bad(GANMetric):
            def __init__(self, returns: Literal["list", "vector", "ok"] = "list", num_samples: int = 50):
                self.returns, self.num_samples = returns, num_samples

            def reset(self):
                pass

            def update(self, x, y=None):
                pass

            def compute(self):
                if self.returns == "list":
                    return [1.0, 2.0]
                if self.returns == "vector":
                    return {"score": torch.ones(3)}
                return {"score": torch.tensor(0.5)}

            def protocol(self):
                return {"returns": self.returns}

        @hookimpl
        def ganforge_register_metrics(register):
            register("bad-metric", Bad)
    """
}


def test_a_metric_returning_a_non_dict_stops_training_naming_it_and_the_checkpoint(tmp_path):
    from conftest import TINY, make_fake_distribution

    site = make_fake_distribution(tmp_path / "site", "ganforge-badmetric", BAD_METRIC, {"badmetric": "badmetric_mod"})
    base = TINY + [f"root_dir={tmp_path / 'runs'}", "train.max_steps=10", "metrics.every_n_steps=10",
                   "train.checkpoint_every_n_steps=5", "metrics.list.1.name=bad-metric"]
    env = {"PYTHONPATH": str(site)}
    for returns, what in [("list", "returned list [1.0, 2.0]"), ("vector", "returned 'score' with shape (3,), not a scalar")]:
        out = run_env(["fit", *base, f"metrics.list.1.returns={returns}"], tmp_path, env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
        last = out.stderr.strip().splitlines()[-1]
        ckpt = tmp_path / "runs" / "ring8" / ("version_0" if returns == "list" else "version_1") / "checkpoints" / "last.ckpt"
        assert last == (f"ganforge: error: metrics.list[1] (metric 'bad-metric' from plugin 'badmetric' "
                        f"(ganforge-badmetric 0.0.1)): compute() {what}; expected a dict of name → number. "
                        f"Training stopped at generator step 10; the last checkpoint is {ckpt} (resume with "
                        f"--resume {ckpt} after fixing the metric, or drop it from metrics.list)."), last
        assert ckpt.is_file()
    good = run_env(["fit", *base, "metrics.list.1.returns=ok"], tmp_path, env)
    assert good.returncode == 0, good.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ring8" / "version_2" / "summary.json").read_text())
    assert summary["metrics"]["bad-metric"]["values"] == {"score": 0.5}
    # `ganforge evaluate` checks the result the same way
    ckpt = tmp_path / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt"
    ev = run_env(["evaluate", str(ckpt), "--metrics", "bad-metric"], tmp_path, env)
    assert ev.returncode == 2 and "Traceback" not in ev.stderr, ev.stderr[-3000:]
    assert ev.stderr.strip() == ("ganforge: error: --metrics bad-metric (metric 'bad-metric' from plugin 'badmetric' "
                                 "(ganforge-badmetric 0.0.1)): compute() returned list [1.0, 2.0]; expected a dict of "
                                 "name → number.")
    ok = run_env(["evaluate", str(ckpt), "--metrics", "bad-metric", "--set", "bad-metric.returns=ok"], tmp_path, env)
    assert ok.returncode == 0 and "bad-metric: score=0.5" in ok.stdout, ok.stderr[-3000:]


# -- the command line's small ones (issue 12) -----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _py(code, env=None):
    """Run ``code`` in a fresh interpreter (sys.modules and OpenMP start clean)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_help_and_version_answer_without_importing_torch():
    out = _py("""
import sys
import ganforge
assert "torch" not in sys.modules, "import ganforge imported torch"
print(ganforge.__version__)
from ganforge.cli.commands import main
for argv in (["--help"], ["--version"], ["fit", "--help"], ["config", "show", "--help"], ["sample", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print("TORCH" if "torch" in sys.modules else "NO-TORCH", "lightning" in sys.modules)
from ganforge import hookimpl, DataInfo, Generator
import ganforge as g
assert all(getattr(g, name) is not None for name in g.__all__)
assert g.Generator is Generator and "torch" in sys.modules  # the public names still work, on demand
try:
    g.no_such_name
except AttributeError as exc:
    print("ATTR", exc)
""")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    version = lines[0]
    assert f"ganforge {version}\n" in out.stdout  # --version
    assert f'version = "{version}"' in (REPO / "pyproject.toml").read_text()
    assert "NO-TORCH False" in out.stdout
    assert "ATTR module 'ganforge' has no attribute 'no_such_name'" in out.stdout


_WAIT_POLICY_PROBE = """
import os, sys
seen = []
class Probe:  # records OMP_WAIT_POLICY at the moment torch is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Probe())
from ganforge.cli.commands import main
rc = main(["config", "show", "train.max_steps=3"])
print("RC", rc, "POLICY", seen)
"""


def test_the_cli_sets_omp_wait_policy_passive_before_torch_unless_the_user_set_it():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", _WAIT_POLICY_PROBE], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RC 0 POLICY ['PASSIVE']" in out.stdout
    mine = _py(_WAIT_POLICY_PROBE, {"OMP_WAIT_POLICY": "active"})
    assert "RC 0 POLICY ['active']" in mine.stdout, mine.stderr[-3000:]


def test_every_argument_of_every_subcommand_has_help():
    import argparse

    from ganforge.cli.commands import parser

    missing, seen = [], []

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                for name, sub in action.choices.items():
                    if name not in helped:
                        missing.append(f"{path} {name} (the subcommand)")
                    walk(sub, f"{path} {name}")
            else:
                seen.append(f"{path} {action.option_strings or action.dest}")
                if not action.help or action.help == argparse.SUPPRESS:
                    missing.append(f"{path} {action.option_strings or action.dest}")

    walk(parser(), "ganforge")
    assert not missing, f"arguments without help=: {missing}"
    assert len(seen) > 30 and any("--version" in s for s in seen) and any("evaluate ['--device']" in s for s in seen)


def test_an_unknown_config_name_suggests_the_closest_builtin_and_lists_them(capsys, tmp_path, monkeypatch):
    from ganforge.cli.commands import main

    monkeypatch.chdir(tmp_path)
    assert main(["config", "show", "-c", "rign8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ganforge: error: config file 'rign8' not found (relative to {tmp_path}). Did you mean `-c ring8`? "
                   "Built-in configs: digits-cgan, digits-dcgan, folder-dcgan, grid25, ring8, ring8-collapse, ring8-saturation, stacked-digits, stacked-digits-mbstd.")
    assert main(["fit", "-c", "grid52.yaml"]) == 2
    assert "Did you mean `-c grid25`?" in capsys.readouterr().err
    assert main(["config", "show", "-c", "xyzzy"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" not in err and "Built-in configs: digits-cgan" in err
    assert main(["config", "show", "-c", "sub/rign8.yaml"]) == 2  # a path, not a name: no list of names
    assert "Built-in configs" not in capsys.readouterr().err
    assert main(["config", "show", "-c", "grid25"]) == 0 and "name: grid25" in capsys.readouterr().out


def test_several_config_files_merge_in_order(tmp_path, registry):
    from ganforge.run.config import ConfigError, load_config

    a = tmp_path / "a.yaml"
    a.write_text("train: {batch_size: 32, max_steps: 7}\nobjective: {name: hinge}\n"
                 "metrics: {list: [{name: mode-coverage, num_samples: 300}, {name: mode-coverage, id: coverage-2}]}\n")
    b = tmp_path / "b.yaml"
    b.write_text("train: {max_steps: 9}\nmetrics: {list: [{name: mode-coverage, num_samples: 200}]}\n"
                 "objective: {name: wgan-gp, gp_weight: 5.0}\n")
    cfg = load_config(["ring8", str(a), str(b)], ["train.n_critic=2"], registry)
    assert cfg["name"] == "ring8"  # from the built-in base
    assert cfg["train"]["batch_size"] == 32 and cfg["train"]["max_steps"] == 9 and cfg["train"]["n_critic"] == 2
    assert [m["num_samples"] for m in cfg["metrics"]["list"]] == [200]  # lists are replaced, not merged
    assert cfg["objective"]["name"] == "wgan-gp" and cfg["objective"]["gp_weight"] == 5.0
    other = load_config(["ring8", str(b), str(a)], [], registry)  # the order decides
    assert other["train"]["max_steps"] == 7 and other["objective"]["name"] == "hinge"
    assert len(other["metrics"]["list"]) == 2
    c = tmp_path / "c.yaml"
    c.write_text("objective: {gp_weight: 1.0}\n")  # same component: parameters merge into it
    assert load_config(["ring8", str(b), str(c)], [], registry)["objective"]["gp_weight"] == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_stepz: 3}\n")
    with pytest.raises(ConfigError, match=r"train.max_stepz"):
        load_config(["ring8", str(bad)], [], registry)
    with pytest.raises(ConfigError, match=r"config file 'missing.yaml' not found"):
        load_config(["ring8", "missing.yaml"], [], registry)


def test_sweep_style_overrides_are_overrides_and_real_options_stay_options(capsys, tmp_path):
    from ganforge.cli.commands import main, parser, split_overrides, _options

    argv = ["fit", "-c", "ring8", "--train.max_steps=500", "--resume=auto", "--config=grid25", "a.b=1",
            "--seed=None", "--no-progress", "--train.compile=False", "--metrics.list=[]"]
    rest, overrides = split_overrides(argv, _options(parser(), argv))
    assert rest == ["fit", "-c", "ring8", "--resume=auto", "--config=grid25", "--no-progress"]
    assert overrides == ["train.max_steps=500", "a.b=1", "seed=null", "train.compile=False", "metrics.list=[]"]
    assert main(["config", "show", "--config=grid25", "--train.max_steps=7", "--train.max_images=None",
                 "--optim.generator.lr=0.0005", "--train.compile=False"]) == 0
    out = capsys.readouterr().out
    assert "name: grid25" in out and "max_steps: 7" in out and "max_images: null" in out and "lr: 0.0005" in out
    assert main(["config", "show", "--train.max_stepz=7"]) == 2
    assert "train.max_stepz" in capsys.readouterr().err
    assert main(["config", "show", "--train.max_steps=-3"]) == 2
    assert "train.max_steps: must be >= 0, got -3" in capsys.readouterr().err


def test_logger_wandb_keeps_the_csv_log(registry):
    from ganforge.run.config import ConfigError, load_config

    names = lambda spec: [lg["name"] for lg in load_config(None, [f"logger={spec}"], registry)["logger"]]  # noqa: E731
    assert names("wandb") == ["csv", "wandb"]
    assert names("{name: wandb, mode: offline}") == ["csv", "wandb"]
    assert names("[wandb, csv]") == ["wandb", "csv"]
    assert names("csv") == ["csv"]
    assert names("[]") == [] and names("null") == []
    with pytest.raises(ConfigError, match=r"logger\[1\]: logger 'csv' is given twice; keep one entry"):
        load_config(None, ["logger=[csv, csv]"], registry)


def test_cpu_threads_is_applied_for_the_fit_restored_after_and_may_change_on_resume(tmp_path, monkeypatch, registry):
    import torch

    from ganforge.cli.commands import main
    from ganforge.run.config import ConfigError, load_config

    for bad, msg in [("0", "must be > 0, got 0"), ("-2", "must be > 0, got -2"),
                     ("1.5", "expected int | null, got 1.5"), ("two", "expected int | null, got 'two'")]:
        with pytest.raises(ConfigError, match=rf"train.cpu_threads: {msg}"):
            load_config(None, [f"train.cpu_threads={bad}"], registry)
    assert load_config(None, [], registry)["train"]["cpu_threads"] is None
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    before = torch.get_num_threads()
    mine = tmp_path / "mine.yaml"
    mine.write_text("train: {max_steps: 4, batch_size: 32, cpu_threads: 1}\nmetrics: {list: []}\n"
                    "dataset: {num_samples: 500}\n")
    base = ["fit", "-c", "ring8", "-c", str(mine), "--no-progress", f"root_dir={tmp_path}"]
    assert main(base) == 0
    assert calls == [1, before] and torch.get_num_threads() == before
    run = tmp_path / "ring8" / "version_0"
    import yaml

    recorded = yaml.safe_load((run / "config.yaml").read_text())  # the merged config is what the run records
    assert recorded["train"]["cpu_threads"] == 1 and recorded["train"]["batch_size"] == 32
    assert recorded["metrics"]["list"] == [] and recorded["dataset"]["num_samples"] == 500
    calls.clear()
    assert main(base + ["train.max_steps=6", "train.cpu_threads=2", "--resume", "auto"]) == 0
    assert calls == [2, before]
    last = json.loads((run / "segments.jsonl").read_text().splitlines()[-1])
    assert last["changes"]["train.cpu_threads"] == [1, 2]


def _sweep_yaml() -> dict:
    import re

    import yaml

    text = (REPO / "docs" / "cluster.md").read_text()
    block = re.search(r"```yaml\n(# sweep\.yaml.*?)```", text, re.S)
    assert block, "docs/cluster.md lost its sweep example"
    return yaml.safe_load(block.group(1))


def test_the_documented_sweep_command_runs_as_a_sweep_agent_starts_it(tmp_path):
    """The argv a W&B agent builds from docs/cluster.md's sweep YAML (wandb's own code), run for real."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    sweep = _sweep_yaml()
    assert sweep["program"] == "ganforge" and "${args}" in sweep["command"]
    trial = {}  # one trial's values, as the sweep controller sends them: {param: {"value": v}}
    for key, spec in sweep["parameters"].items():
        trial[key] = {"value": spec["values"][0] if "values" in spec else spec.get("value", spec.get("min"))}
    tiny = {"generator.width": 16, "discriminator.width": 16, "dataset.num_samples": 500, "train.batch_size": 32,
            "train.max_steps": 4, "metrics.list": [], "train.max_images": None, "train.compile": False,
            "root_dir": str(tmp_path / "runs")}
    trial.update({k: {"value": v} for k, v in tiny.items()})
    args = sweep_utils.create_sweep_command_args({"args": trial})
    assert "--train.max_images=None" in args["args"] and "--metrics.list=[]" in args["args"]
    vars_ = {**args, "env": ["/usr/bin/env"], "program": [sweep["program"]], "interpreter": ["python"]}
    command = []
    for c in sweep_utils.create_sweep_command(list(sweep["command"])):  # the agent's expansion of ${...}
        c = str(c)
        command += (vars_.get(c[2:-1]) or []) if c.startswith("${") and c.endswith("}") else [c]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "GANFORGE_RUN_DIR"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               NETRC=str(home / ".netrc"), WANDB_MODE="offline", WANDB_RUN_ID="sweeptrial7",
               WANDB_DIR=str(tmp_path / "wandb_dir"), WANDB_CACHE_DIR=str(tmp_path / "cache"),
               WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_DATA_DIR=str(tmp_path / "data"),
               WANDB_ERROR_REPORTING="false", GANFORGE_PROGRESS="0", WANDB_SWEEP_ID="sweep42")
    from wandb.sdk.lib import config_util

    params = tmp_path / "wandb" / "sweep-sweep42" / "config-sweeptrial7.yaml"  # as the agent writes it
    params.parent.mkdir(parents=True)
    config_util.save_config_file_from_dict(str(params), trial)
    env["WANDB_SWEEP_PARAM_PATH"] = str(params)
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (command, out.stderr[-3000:])
    run = tmp_path / "runs" / "ring8" / "version_0"
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["objective"]["name"] == "non-saturating" and cfg["optim"]["generator"]["lr"] == 0.0001
    assert cfg["train"]["max_steps"] == 4 and cfg["train"]["max_images"] is None
    assert cfg["generator"]["width"] == 16 and cfg["metrics"]["list"] == []
    assert [lg["name"] for lg in cfg["logger"]] == ["csv", "wandb"]
    assert (run / "metrics.csv").is_file()  # logger=wandb keeps metrics.csv
    assert list(run.glob("wandb/offline-run-*-sweeptrial7")), "the W&B run must take the agent's WANDB_RUN_ID"


def test_relative_links_in_readme_and_docs_resolve_inside_the_repository():
    import re

    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked, bad = 0, []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
        targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
        for target in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or a heading on the same page
            path = target.split("#", 1)[0]
            resolved = (page.parent / path).resolve()
            checked += 1
            if path.startswith("/") or not resolved.is_relative_to(REPO) or not resolved.exists():
                bad.append(f"{page.relative_to(REPO)}: {target}")
        for ref in re.findall(r"`((?:\.\./|/work/|/home/|~/)[^`\s]*)`", text):  # paths named outside the repo
            if not (page.parent / ref).resolve().is_relative_to(REPO) and not ref.startswith("~/."):
                bad.append(f"{page.relative_to(REPO)}: `{ref}`")
        for ref in re.findall(r"`([^`\s]+\.md)`", text):  # a page named in code: in the repository too
            if not ((REPO / ref).is_file() or (page.parent / ref).is_file()):
                bad.append(f"{page.relative_to(REPO)}: `{ref}`")
    assert checked >= 10
    assert not bad, f"links that do not resolve to a file in the repository: {bad}"


def test_make_install_shows_pips_progress():
    script = (REPO / "scripts" / "install.sh").read_text()
    pip = next(line for line in script.splitlines() if line.startswith("PIP=("))
    assert "-m pip install" in pip and " -q" not in pip and "--quiet" not in pip
