"""Evaluation has one home (ganforge.evaluation.core): training and `ganforge evaluate` share it, so
`ganforge evaluate CKPT` with no flags gives summary.json's numbers exactly (issue 12); every
protocol records the sampling seed, counts, conditions rule, generator and reference split; the
real-vs-real floor is measured on disjoint real sets at the model's counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ganforge.cli.commands import main

FID_RING = ["metrics.list.1.name=fid", "metrics.list.1.feature_extractor=identity", "metrics.list.1.num_samples=300",
            "metrics.list.1.num_real=700"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


def evaluate_json(capsys, tmp_path, ckpt, *flags, name="e.json"):
    out = tmp_path / name
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--json", str(out), *flags]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


@pytest.fixture
def ring_run(tiny, tmp_path):
    assert main(["fit", *tiny, *FID_RING, "seed=3"]) == 0  # not 0: evaluate must take the run's seed
    run = tmp_path / "runs" / "ring8" / "version_0"
    return run, json.loads((run / "summary.json").read_text())


def test_evaluate_with_no_flags_reproduces_the_summary_of_a_ring_run(ring_run, tmp_path, capsys):
    run, summary = ring_run
    res, out = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt")
    assert "at generator step 20: ema generator, seed 3 (the run's), sampled as 1 rank(s)" in out
    assert set(res["metrics"]) == {"mode-coverage", "fid"}  # the run's own metric list by default
    for name, entry in summary["metrics"].items():
        assert res["metrics"][name]["values"] == entry["values"], name  # equality, not closeness
        assert res["metrics"][name]["protocol"] == entry["protocol"], name
    fid = summary["metrics"]["fid"]["protocol"]
    assert fid["sampling"]["seed"] == 3 and fid["sampling"]["num_samples"] == 300
    assert fid["sampling"]["generator"] == "ema" and fid["sampling"]["world_size"] == 1
    assert fid["sampling"]["conditions"] == "none (unconditional model)"
    ref = fid["reference"]
    assert ref["real_count"] == 700 and ref["dataset_size"] == 2000 and ref["permutation_seed"] == 4
    assert ref["split"] == "the whole dataset (it has no splits)"
    assert summary["metrics"]["mode-coverage"]["protocol"]["reference"] == {"real_data": False}
    assert res["seed"] == 3 and res["generator"] == "ema"
    # the numbers do depend on what the protocol records: another seed or the raw generator differ
    other, _ = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt", "--seed", "1", name="s1.json")
    assert other["metrics"]["fid"]["values"]["fid"] != summary["metrics"]["fid"]["values"]["fid"]
    assert other["metrics"]["fid"]["protocol"]["sampling"]["seed"] == 1
    raw, _ = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt", "--no-ema", name="raw.json")
    assert raw["metrics"]["fid"]["values"]["fid"] != summary["metrics"]["fid"]["values"]["fid"]
    assert raw["generator"] == "raw" and raw["metrics"]["fid"]["protocol"]["sampling"]["generator"] == "raw"


def test_evaluate_with_no_flags_reproduces_the_summary_of_a_digits_cgan_run(tmp_path, capsys):
    assert main(["fit", "-c", "digits-cgan", "dataset.resolution=8", "generator.width=8", "discriminator.width=8",
                 "train.max_steps=4", "train.batch_size=32", "metrics.every_n_steps=2", "logger=csv",
                 "metrics.list.0.num_samples=150", "metrics.list.1.num_samples=150", "metrics.list.1.num_real=400",
                 f"root_dir={tmp_path / 'runs'}"]) == 0
    run = tmp_path / "runs" / "digits-cgan" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    res, _ = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt")
    for name in ("class-coverage", "fid"):
        assert res["metrics"][name]["values"] == summary["metrics"][name]["values"], name
        assert res["metrics"][name]["protocol"] == summary["metrics"][name]["protocol"], name
    fid = summary["metrics"]["fid"]["protocol"]
    assert fid["sampling"]["conditions"] == "balanced classes: sample i of each rank gets class i mod 10"
    assert fid["reference"]["split"] == "all" and fid["reference"]["real_count"] == 400
    assert fid["reference"]["dataset_size"] == 1797


def test_floor_is_fid_of_two_disjoint_real_sets_at_the_model_counts(ring_run, tmp_path, capsys):
    from ganforge.loop.data import _perm
    from ganforge.registry.registry import get_registry

    run, summary = ring_run
    res, out = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt", "--floor")
    floor = res["metrics"]["fid"]["floor"]
    assert floor["available"] and floor["matched"]
    assert (floor["reference_count"], floor["compared_count"]) == (700, 300)
    assert "floor" not in res["metrics"]["mode-coverage"]  # no real data, no floor
    assert "floor (real vs real, 300 vs 700 disjoint real samples): fid=" in out
    # independently: the first 700 of the reference permutation against the next 300, in numpy float64
    ds = get_registry().build("dataset", {"name": "gaussian-ring", "num_samples": 2000}, seed=3)
    x = ds.data.double().numpy()
    order = _perm(len(ds), 3 + 1, 0).numpy()
    a, b = x[order[:700]], x[order[700:1000]]
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w = np.linalg.eigvals(s1 @ s2)
    expect = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(w.real.clip(0)).sum())
    assert floor["values"]["fid"] == pytest.approx(expect, rel=1e-9)
    assert floor["values"]["fid"] < summary["metrics"]["fid"]["values"]["fid"]  # an untrained model is worse
    # when the data cannot hold both counts: split in the same proportion, and said so
    res2, out2 = evaluate_json(capsys, tmp_path, run / "checkpoints" / "last.ckpt", "--floor", "--metrics", "fid",
                               "--set", "fid.num_real=null", name="all.json")
    f2 = res2["metrics"]["fid"]["floor"]
    assert not f2["matched"] and (f2["reference_count"], f2["compared_count"]) == (1739, 261)
    assert "NOT at the model's counts (300 generated vs 2000 real)" in out2


def test_floor_counts_and_reference_selection():
    from ganforge.evaluation.core import floor_counts, reference_selection

    assert floor_counts(1797, 899, 898) == (899, 898, True)
    assert floor_counts(1797, 1797, 2000) == (850, 947, False)  # 1797 · 1797/3797
    # the real subset depends on the data seed only when it is a subset: part of the cache key
    assert reference_selection(1000, None, 5) == reference_selection(1000, 1000, 7) == {"samples": "all"}
    assert reference_selection(1000, 10, 5) != reference_selection(1000, 10, 7)


def test_evaluate_flags_are_checked(tmp_path, capsys):
    npz = tmp_path / "s.npz"
    np.savez(npz, x=np.zeros((4, 2), dtype=np.float32))
    cases = [
        (["evaluate", "any.ckpt", "--world-size", "0"],
         "--world-size 0: must be >= 1 (the number of processes the run trained on)."),
        (["evaluate", "--samples", str(npz), "-c", "ring8", "--floor"], "--floor: only for a checkpoint"),
        (["evaluate", "--samples", str(npz), "-c", "ring8", "--world-size", "2"], "--world-size: only for a checkpoint"),
        (["evaluate", "--samples", str(npz), "-c", "ring8", "--seed", "3"], "--seed: only for a checkpoint"),
        (["evaluate", "any.ckpt", "--seed", "-1"], "--seed -1: must be in [0, 4294967295]."),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ganforge: error: ") and message in err and "Traceback" not in err, (argv, err)


def test_evaluate_replays_a_two_process_run(tiny, tmp_path):
    """A 2-process DDP run on the CPU: `--world-size 2` replays both ranks' noise in one process."""
    env = dict(os.environ, GANFORGE_PROGRESS="0", OMP_NUM_THREADS="1", GANFORGE_CACHE=str(tmp_path / "cache"))
    env.pop("GANFORGE_RUN_DIR", None)
    ganforge = [sys.executable, "-m", "ganforge"]
    fit = subprocess.run(ganforge + ["fit", *tiny, *FID_RING, "metrics.list.1.num_samples=301",
                                     "trainer.devices=2", "trainer.accelerator=cpu"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = tmp_path / "runs" / "ring8" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["fid"]["protocol"]["sampling"]["per_rank"] == [151, 150]
    for flags, same in (([], False), (["--world-size", "2"], True)):
        out = tmp_path / f"e{len(flags)}.json"
        ev = subprocess.run(ganforge + ["evaluate", str(run / "checkpoints" / "last.ckpt"), "--json", str(out), *flags],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert ev.returncode == 0, ev.stderr[-3000:]
        res = json.loads(out.read_text())
        assert (res["metrics"]["fid"]["values"] == summary["metrics"]["fid"]["values"]) is same, flags
        assert (res["metrics"]["fid"]["protocol"] == summary["metrics"]["fid"]["protocol"]) is same, flags


def test_training_and_evaluate_call_the_same_function(monkeypatch, tiny, tmp_path):
    """One home: the callback goes through ganforge.evaluation.core.evaluate (replacing it changes training)."""
    import ganforge.run.callbacks as callbacks

    calls = []
    real = callbacks.evaluate_metrics

    def spy(*args, **kwargs):
        calls.append(kwargs.get("ranks"))
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "evaluate_metrics", spy)
    assert main(["fit", *tiny]) == 0
    assert calls == [[0], [0]]  # steps 10 and 20, rank 0 of 1


# -- metric entry ids (issue 8, part 1) -----------------------------------------------------------------

TWO_FIDS = ["metrics.list.2.name=fid", "metrics.list.2.id=fid-small", "metrics.list.2.feature_extractor=identity",
            "metrics.list.2.num_samples=200", "metrics.list.2.num_real=100"]


def test_two_fid_entries_with_ids_both_reach_the_summary_and_fit_returns_it(tiny, tmp_path, registry):
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    cfg = load_config(None, [*tiny, *FID_RING, *TWO_FIDS], registry)
    assert [m.get("id", m["name"]) for m in cfg["metrics"]["list"]] == ["mode-coverage", "fid", "fid-small"]
    out = fit(cfg, progress=False, registry=registry)
    summary = json.loads((out["run_dir"] / "summary.json").read_text())
    assert set(summary["metrics"]) == {"mode-coverage", "fid", "fid-small"}
    assert summary["metrics"]["fid"]["values"]["fid"] != summary["metrics"]["fid-small"]["values"]["fid"]
    assert summary["metrics"]["fid-small"]["protocol"]["reference"]["real_count"] == 100
    assert summary["metrics"]["fid"]["generator_used"] in ("ema", "raw") and "evaluated" not in summary["metrics"]["fid"]
    from ganforge.io import json_safe

    written = {k: v for k, v in summary.items() if k != "non_finite"}  # write_json's note on NaN → null
    assert json_safe(out["summary"]) == written  # fit returns the dict written to summary.json
    header = (out["run_dir"] / "metrics.csv").read_text().splitlines()[0]
    assert "metrics/fid-small/fid" in header and "metrics/fid/fid" in header


def test_duplicate_metric_ids_are_a_config_error_naming_both(tiny, registry):
    from ganforge.registry.errors import ConfigError
    from ganforge.run.config import load_config

    dup = ["metrics.list.2.name=fid", "metrics.list.2.feature_extractor=identity"]
    with pytest.raises(ConfigError, match=r"metrics.list\[2\]: metric id 'fid' is already used by metrics.list\[1\].*"
                                          r"distinct id"):
        load_config(None, [*tiny, *FID_RING, *dup], registry)
    with pytest.raises(ConfigError, match=r"metrics.list\[1\].id: 'a b' is not a valid id"):
        load_config(None, [*tiny, *FID_RING, "metrics.list.1.id='a b'"], registry)


def test_two_fid_entries_with_different_extractors_on_digits_both_reach_the_summary(tmp_path, registry):
    """Issue 8's check, literally: FID on digits-cnn features and FID on pixels (identity) in one config."""
    from ganforge.run.config import load_config
    from ganforge.run.runner import fit

    two = ["metrics.list=[{name: fid, feature_extractor: digits-cnn, num_samples: 120, num_real: 300},"
           " {name: fid, id: fid-pixels, feature_extractor: identity, num_samples: 120, num_real: 300}]"]
    cfg = load_config("digits-cgan", ["dataset.resolution=8", "generator.width=8", "discriminator.width=8",
                                      "train.max_steps=2", "train.batch_size=32", "metrics.every_n_steps=0",
                                      "samples.every_n_steps=0", "logger=csv", f"root_dir={tmp_path / 'runs'}", *two],
                      registry)
    out = fit(cfg, progress=False, registry=registry)
    summary = json.loads((out["run_dir"] / "summary.json").read_text())
    fid, pixels = summary["metrics"]["fid"], summary["metrics"]["fid-pixels"]
    assert fid["protocol"]["feature_extractor"] == "digits-cnn" and fid["protocol"]["feature_dim"] == 64
    assert len(fid["protocol"]["weights_sha256"]) == 64
    assert pixels["protocol"]["feature_extractor"] == "identity" and pixels["protocol"]["feature_dim"] == 64  # 8x8
    assert pixels["protocol"]["weights_sha256"] == ""
    for entry in (fid, pixels):
        assert entry["protocol"]["reference"]["real_count"] == 300 and np.isfinite(entry["values"]["fid"])
    assert fid["values"]["fid"] != pixels["values"]["fid"]  # two computations, neither overwrote the other
    header = (out["run_dir"] / "metrics.csv").read_text().splitlines()[0]
    assert "metrics/fid/fid" in header and "metrics/fid-pixels/fid" in header
