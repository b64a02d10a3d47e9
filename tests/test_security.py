"""Files are data, never code: hostile checkpoints and cache entries run nothing and get one clear message.

Every payload here is a pickled object whose ``__reduce__`` creates a marker file when unpickled
(``test_the_payload_is_live`` shows that it does, with plain ``pickle``); each test asserts the exit
code, the message, and that the marker does not exist afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from ganforge.run.callbacks import AtomicCheckpointIO
from ganforge.cli.commands import main
from ganforge.registry.errors import ConfigError

NEVER = "ganforge never executes code from files"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory):
    """A checkpoint of a tiny ring run (with EMA), written by this version of ganforge."""
    from conftest import TINY

    from ganforge.run.config import load_config
    from ganforge.registry.registry import get_registry
    from ganforge.run.runner import fit

    root = tmp_path_factory.mktemp("security")
    reg = get_registry()
    cfg = load_config(None, TINY + [f"root_dir={root / 'runs'}", "train.max_steps=4", "metrics.list=[]",
                                    "train.ema_halflife_images=500"], reg)
    out = fit(cfg, progress=False, registry=reg)
    return out["run_dir"] / "checkpoints" / "last.ckpt"


def _commands(ckpt, tmp_path):
    root = tmp_path / "runs"
    return {
        "sample": ["sample", str(ckpt), "--num", "8", "--out", str(tmp_path / "samples")],
        "evaluate": ["evaluate", str(ckpt), "--metrics", "mode-coverage", "--num-samples", "100"],
        "fit --resume": ["fit", "--resume", str(ckpt), "--no-progress", "train.max_steps=6", "metrics.list=[]",
                         "logger=csv", f"root_dir={root}"],
    }


def _run_all(ckpt, tmp_path, capsys):
    """Each command's (exit code, stderr)."""
    out = {}
    for name, argv in _commands(ckpt, tmp_path).items():
        code = main(argv)
        out[name] = (code, capsys.readouterr().err)
    return out


def _error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("ganforge: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_the_payload_is_live(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # so "the marker does not exist" below means "nothing ran"


def test_checkpoints_are_plain_data(real_ckpt):
    blob = torch.load(real_ckpt, map_location="cpu", weights_only=True)
    rng = blob["ganforge"]["rng"]
    assert isinstance(rng["numpy"]["key"], torch.Tensor) and isinstance(rng["python"]["internal"], torch.Tensor)
    assert blob["optimizer_states"] and blob["ganforge"]["config"]["seed"] is not None


def test_bare_pickle_named_ckpt_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    bad = tmp_path / "bare.ckpt"
    bad.write_bytes(pickle.dumps(Payload(marker)))
    for name, (code, err) in _run_all(bad, tmp_path, capsys).items():
        line = _error_line(err)
        assert code == 2, (name, err)
        assert f"checkpoint '{bad}' contains pickled Python objects that are not plain data (posix.system)" in line
        assert NEVER in line and "nothing in it ran" in line and "checkpoints/last.ckpt" in line, line
        assert "weights_only=False" not in line
    assert not marker.exists()


def test_payload_hidden_in_a_valid_checkpoint_runs_nothing(real_ckpt, tmp_path, capsys):
    marker = tmp_path / "ran"
    blob = torch.load(real_ckpt, map_location="cpu", weights_only=True)
    blob["ganforge"]["note"] = Payload(marker)  # everything else stays a loadable checkpoint
    bad = tmp_path / "tampered.ckpt"
    torch.save(blob, bad)
    for name, (code, err) in _run_all(bad, tmp_path, capsys).items():
        line = _error_line(err)
        assert code == 2, (name, err)
        assert f"checkpoint '{bad}' contains pickled Python objects that are not plain data (posix.system)" in line
        assert NEVER in line, line
    # Lightning's own load on resume goes through ganforge's checkpoint IO: data only, whatever it asks for
    with pytest.raises(ConfigError, match=r"tampered\.ckpt' contains pickled Python objects .*posix\.system"):
        AtomicCheckpointIO().load_checkpoint(bad, weights_only=False)
    assert not marker.exists()


def test_text_file_named_ckpt_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("step 100: loss 0.3\nthis is not a checkpoint\n")
    for name, (code, err) in _run_all(bad, tmp_path, capsys).items():
        line = _error_line(err)
        assert code == 2, (name, err)
        assert f"checkpoint '{bad}' cannot be read" in line, line  # what it says of the file: tests/test_module.py
        assert "pickled" not in line and NEVER not in line, line


def test_checkpoint_from_before_plain_data_says_so(real_ckpt, tmp_path, capsys):
    blob = torch.load(real_ckpt, map_location="cpu", weights_only=True)
    blob["ganforge"]["rng"]["numpy"] = np.random.get_state()  # what checkpoints held before: a numpy array
    old = tmp_path / "old.ckpt"
    torch.save(blob, old)
    for name, (code, err) in _run_all(old, tmp_path, capsys).items():
        line = _error_line(err)
        assert code == 2, (name, err)
        assert f"checkpoint '{old}' was written by a ganforge from before checkpoints became plain data" in line
        assert "numpy" in line and "nothing to migrate" in line and "without --resume" in line, line


def test_bare_pickle_through_the_installed_command(tmp_path):
    """The real process, not just ``main``: exit code 2, one line, and still nothing ran."""
    marker = tmp_path / "ran"
    bad = tmp_path / "bare.ckpt"
    bad.write_bytes(pickle.dumps(Payload(marker)))
    env = dict(os.environ, GANFORGE_PROGRESS="0")
    out = subprocess.run([sys.executable, "-m", "ganforge", "sample", str(bad), "--out", str(tmp_path / "s")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "contains pickled Python objects" in _error_line(out.stderr)
    assert not marker.exists()


def test_hostile_cache_entry_is_discarded_unread_and_recomputed(real_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    argv = ["evaluate", str(real_ckpt), "--metrics", "fid", "--set", "fid.feature_extractor=identity",
            "--set", "fid.num_samples=200", "--set", "fid.num_real=200"]
    assert main(argv + ["--json", str(tmp_path / "first.json")]) == 0
    capsys.readouterr()
    (entry,) = (tmp_path / "cache" / "stats").glob("*.pt")
    good = torch.load(entry, map_location="cpu", weights_only=True)
    marker = tmp_path / "ran"
    torch.save({"key": good["key"], "value": Payload(marker)}, entry)  # the right key: it would be a hit
    assert main(argv + ["--json", str(tmp_path / "second.json")]) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "cache entry" in ln]
    assert warnings == [
        f"ganforge: warning: cache entry '{entry}' contains pickled Python objects that are not plain data "
        f"(posix.system) and was not loaded ({NEVER}); deleted, the statistics are recomputed."
    ], err
    assert not marker.exists()
    rewritten = torch.load(entry, map_location="cpu", weights_only=True)  # recomputed, plain data again
    assert rewritten["key"] == good["key"]
    def same(a, b) -> bool:  # the cached statistics: tensors in (nested) dicts, plain values
        if torch.is_tensor(a):
            return torch.is_tensor(b) and torch.equal(a, b)
        if isinstance(a, dict):
            return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
        return a == b

    assert same(rewritten["value"], good["value"])
    first, second = (json.loads((tmp_path / f).read_text()) for f in ("first.json", "second.json"))
    assert second["metrics"]["fid"]["values"] == first["metrics"]["fid"]["values"]


@pytest.mark.parametrize("name", ["data.pt", "my data.pt"])  # a space in the path once cut the message
def test_tensor_file_dataset_refuses_pickled_objects(tmp_path, name):
    from ganforge_plugins.data.tensor_file import _read

    marker = tmp_path / "ran"
    bad = tmp_path / name
    torch.save({"x": torch.zeros(4, 2), "y": Payload(marker)}, bad)
    with pytest.raises(ValueError) as e:
        _read(str(bad), bad)
    msg = str(e.value)
    assert f"path: {bad} contains pickled Python objects that are not plain data (posix.system)" in msg
    assert NEVER in msg and "weights_only=False" not in msg
    assert not marker.exists()


def test_rng_states_round_trip_through_a_plain_data_checkpoint(real_ckpt):
    """numpy's and Python's global RNGs continue bit for bit after save → torch.load(weights_only=True) → load."""
    import io
    import random

    from ganforge.run.checkpoint import load_module

    module = load_module(real_ckpt)
    np.random.seed(7)
    np.random.normal()  # leaves a cached gaussian: part of the state
    random.seed(7)
    random.gauss(0, 1)
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    expected = (np.random.normal(size=3).tolist(), random.gauss(0, 1), random.random(), torch.rand(2))
    buf.seek(0)
    module.on_load_checkpoint(torch.load(buf, weights_only=True))
    got = (np.random.normal(size=3).tolist(), random.gauss(0, 1), random.random(), torch.rand(2))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_inception_weights_file_with_pickled_objects_runs_nothing(tmp_path):
    from ganforge_plugins.extractors.inception import INCEPTION_FILE, inception_v3

    marker = tmp_path / "ran"
    bad = tmp_path / INCEPTION_FILE
    torch.save({"conv.weight": torch.zeros(1), "hook": Payload(marker)}, bad)
    with pytest.raises(ValueError) as e:
        inception_v3(weights=str(bad))
    msg = str(e.value)
    assert f"inception-v3: weights file '{bad}' contains pickled Python objects that are not plain data" in msg
    assert "posix.system" in msg and NEVER in msg and f"Replace it with {INCEPTION_FILE}" in msg
    assert not marker.exists()
