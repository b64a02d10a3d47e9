"""Messages about a checkpoint that cannot be loaded say what the file is and what is true about
the run's other checkpoints (no "pickled data" for a text file, no "an older last.ckpt is intact"
when there is none)."""

from __future__ import annotations

import os

import pytest

from ganforge.cli import commands as cli


@pytest.fixture(autouse=True)
def _no_run_dir(monkeypatch):
    monkeypatch.delenv("GANFORGE_RUN_DIR", raising=False)


def _resume(path, tiny, capsys) -> str:
    rc = cli.main(["fit", *tiny, "--resume", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.startswith("ganforge: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("content, says", [
    (b"hello\n", "it is a text file, not a checkpoint (it begins 'hello')"),
    (b"generator:\n  name: mlp\n", "it is a text file, not a checkpoint (it begins 'generator:')"),
    (b"", "the file is empty (0 bytes)"),
    (bytes(range(256)) * 4, "it is not a PyTorch checkpoint, or it is corrupt"),
])
def test_what_the_file_is(tmp_path, tiny, capsys, content, says):
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    msg = _resume(path, tiny, capsys)
    assert f"checkpoint '{path}' cannot be read: {says}" in msg
    assert "pickled" not in msg and "intact" not in msg and "other checkpoint" not in msg


def test_a_damaged_only_checkpoint_says_there_is_no_other(tmp_path, tiny, capsys):
    path = tmp_path / "runs" / "ring8" / "version_0" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(64))
    msg = _resume(path, tiny, capsys)
    assert "the run has no other checkpoint: start again without --resume" in msg and "intact" not in msg


def test_a_damaged_copy_points_to_the_runs_other_checkpoint(tmp_path, tiny, capsys):
    folder = tmp_path / "runs" / "ring8" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"placeholder for the run's own checkpoint")
    bad = folder / "step_100.ckpt"
    bad.write_bytes(b"")
    msg = _resume(bad, tiny, capsys)
    assert f"The run's other checkpoint {folder / 'last.ckpt'} is a separate file: resume from that one." in msg
