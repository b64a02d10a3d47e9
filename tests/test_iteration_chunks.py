"""``train.iterations_per_batch``: several iterations per Lightning batch change nothing but the
number of Lightning batches (weights, optimizer states, counters, logs, checkpoints, evaluations)."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch

from conftest import fit_with_callbacks
from ganforge.loop.module import GANModule
from ganforge.registry.errors import ConfigError
from ganforge.run.config import load_config
from ganforge.run.runner import fit


def _fit(registry, overrides, resume=None):
    return fit(load_config(None, overrides, registry), resume=resume, progress=False, registry=registry)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _rows(run_dir):
    """metrics.csv without the wall-clock columns."""
    return [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k}
            for r in csv.DictReader(open(run_dir / "metrics.csv"))]


def _same_state(a, b):
    assert a["ganforge"]["counters"] == b["ganforge"]["counters"]
    assert list(a["state_dict"]) == list(b["state_dict"])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["global_step"] == b["global_step"]


class _Batches(L.Callback):
    """Counts Lightning batches and the iterations each one held."""

    def __init__(self, declares: bool = False):
        self.sizes: list[int] = []
        self._before = 0
        if declares:
            self.handles_iteration_chunks = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = pl_module.iterations

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.sizes.append(pl_module.iterations - self._before)


@pytest.mark.parametrize("extra", [[], ["train.n_critic=2", "objective.name=wgan-gp", "train.on_nonfinite=skip"]])
def test_chunks_give_the_same_run_as_one_iteration_per_batch(tiny, registry, extra):
    """Weights, Adam states, counters, Lightning's global_step, every metrics.csv row (losses,
    evaluations) and summary.json agree bit for bit between 1, 7 and 16 iterations per batch, with
    logging every 5, checkpoints every 6 and evaluations every 10 steps cutting the chunks."""
    common = tiny + ["train.max_steps=23", "train.ema_halflife_images=500", "train.checkpoint_every_n_steps=6"] + extra
    runs = {k: _fit(registry, common + [f"name=k{k}", f"train.iterations_per_batch={k}"]) for k in (1, 7, 16)}
    for k, out in runs.items():
        assert out["module"].fast_paths["iterations_per_batch"] == k
    base = runs[1]
    a = _state(base["run_dir"] / "checkpoints" / "last.ckpt")
    for k in (7, 16):
        _same_state(a, _state(runs[k]["run_dir"] / "checkpoints" / "last.ckpt"))
        assert _rows(runs[k]["run_dir"]) == _rows(base["run_dir"])
        assert runs[k]["summary"]["metrics"] == base["summary"]["metrics"]  # the final evaluation


def test_a_chunked_run_resumes_bit_for_bit_with_either_setting(tiny, registry):
    """8 steps chunked, 8 more with one iteration per batch (and the reverse) == 16 straight."""
    common = tiny + ["train.ema_halflife_images=500", "metrics.list=[]", "train.checkpoint_every_n_steps=1000"]
    straight = _fit(registry, common + ["name=straight", "train.max_steps=16", "train.iterations_per_batch=1"])
    ref = _state(straight["run_dir"] / "checkpoints" / "last.ckpt")
    for first, second in ((16, 1), (1, 16)):
        name = f"name=r{first}"
        a = _fit(registry, common + [name, "train.max_steps=8", f"train.iterations_per_batch={first}"])
        b = _fit(registry, common + [name, "train.max_steps=16", f"train.iterations_per_batch={second}"],
                 resume=str(a["run_dir"] / "checkpoints" / "last.ckpt"))
        _same_state(ref, _state(b["run_dir"] / "checkpoints" / "last.ckpt"))


def test_chunks_end_at_sync_points_and_the_first_batch_holds_one_iteration(tiny, registry, tmp_path):
    over = tiny + ["metrics.list=[]", "train.max_steps=40", "train.log_every_n_steps=10",
                   "train.checkpoint_every_n_steps=1000", "samples.every_n_steps=1000", "train.iterations_per_batch=4"]
    seen = _Batches(declares=True)
    module, _ = fit_with_callbacks(registry, over, tmp_path / "a", [seen])
    assert module.fast_paths["iterations_per_batch"] == 4
    # [1], then chunks of 4 cut at steps 10, 20, 30 (logging) and 40 (the end)
    assert seen.sizes == [1, 4, 4, 1] + [4, 4, 2] * 3
    assert module.iterations == 40


def test_a_callback_with_batch_hooks_gets_one_iteration_per_batch(tiny, registry, tmp_path):
    """A third party's callback written for one iteration per batch is not surprised; one that
    declares ``handles_iteration_chunks`` is not slowed down; data through a loader: one per batch."""
    over = tiny + ["metrics.list=[]", "train.max_steps=12"]
    plain = _Batches()
    module, trainer = fit_with_callbacks(registry, over, tmp_path / "a", [plain])
    assert module.fast_paths["iterations_per_batch"] == 1 and plain.sizes == [1] * 12
    from ganforge.loop.module import iterations_per_batch

    assert iterations_per_batch(trainer, 16) == 1
    trainer.callbacks.remove(plain)
    assert iterations_per_batch(trainer, 16) == 16  # ganforge's own callbacks all declare it
    loader = _Batches(declares=True)
    module, _ = fit_with_callbacks(registry, over + ["train.data_on_device=false"], tmp_path / "b", [loader])
    assert module.fast_paths["iterations_per_batch"] == 1 and loader.sizes == [1] * 12


@pytest.mark.parametrize("value,message", [("0", "must be"), ("-3", "must be"), ("many", "int"), ("2.5", "int")])
def test_bad_iterations_per_batch_is_refused_with_the_key(registry, value, message):
    with pytest.raises(ConfigError, match=rf"train.iterations_per_batch.*{message}"):
        load_config(None, [f"train.iterations_per_batch={value}"], registry)


def test_a_stop_request_mid_chunk_is_acted_on_at_the_chunk_end(tiny, registry, monkeypatch):
    """The module stops at max_steps inside a chunk (Lightning's batch may hold more): no extra iteration."""
    calls = []
    original = GANModule.iteration
    monkeypatch.setattr(GANModule, "iteration", lambda self, b: calls.append(self.iterations) or original(self, b))
    out = _fit(registry, tiny + ["train.max_steps=13", "train.log_every_n_steps=1000", "metrics.every_n_steps=0",
                                  "metrics.list=[]", "train.checkpoint_every_n_steps=1000", "train.iterations_per_batch=16"])
    assert calls == list(range(13)) and out["module"].g_steps == 13


def test_the_iteration_benchmark_compares_a_setting_side_by_side():
    """The command docs/results.md shows (``--compare``), at a few iterations: every row and ratio printed."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "iteration.py"
    r = subprocess.run([sys.executable, str(script), "--threads", "1", "--repeats", "1", "--steps", "12",
                        "--warmup", "3", "--compare", "train.iterations_per_batch=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "hand-written PyTorch" in out and "ganforge train.iterations_per_batch=1" in out
    assert out.count("paired ratios (per repeat)") == 2
