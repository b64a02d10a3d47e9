"""scripts/progress_side_by_side.py: runs' step pictures in one PNG, one row per run, one column per step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "progress_side_by_side.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("progress_side_by_side", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, name: str, steps: list[int], colour: tuple[int, int, int]) -> Path:
    samples = tmp_path / name / "samples"
    samples.mkdir(parents=True)
    for s in steps:
        Image.new("RGB", (40, 30), colour).save(samples / f"step_{s:07d}.png")
    Image.new("RGB", (10, 10)).save(samples / "progress.png")  # not a step picture
    return tmp_path / name


def test_rows_are_runs_and_columns_are_common_steps(script, tmp_path, capsys):
    red = _run(tmp_path, "a", [0, 250, 500, 750, 1000], (255, 0, 0))
    blue = _run(tmp_path, "b", [0, 500, 1000, 1500], (0, 0, 255))
    out = tmp_path / "side.png"
    assert script.main([f"plain={red}", f"unrolled, k = 5={blue}", "--out", str(out), "--scale", "1"]) == 0
    assert "2 runs x 3 steps (0, 500, 1000)" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    gap, label_h = 8, 30
    assert img.shape == (2 * (label_h + 30) + gap, 3 * 40 + 2 * gap, 3)
    # each row holds its own run's panels, below its label
    assert tuple(img[label_h + 15, 20]) == (255, 0, 0) and tuple(img[label_h + 15, 2 * 48 + 20]) == (255, 0, 0)
    assert tuple(img[2 * label_h + 30 + gap + 15, 48 + 20]) == (0, 0, 255)
    assert tuple(img[label_h + 15, 44]) == (255, 255, 255)  # the gap between columns


def test_steps_and_columns_pick_the_columns(script, tmp_path, capsys):
    run = _run(tmp_path, "a", [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000], (0, 128, 0))
    out = str(tmp_path / "x.png")
    script.main([f"r={run}", "--out", out, "--columns", "5"])
    assert "1 runs x 5 steps (0, 1000, 2000, 3000, 4000)" in capsys.readouterr().out
    script.main([f"r={run}", "--out", out, "--steps", "500,4000", "--scale", "0.5"])
    assert Image.open(out).size == (2 * 20 + 8, 30 + 15)


@pytest.mark.parametrize("args, message", [
    (["{run}"], "give LABEL=RUN_DIR"),
    (["r={tmp}/missing"], "no samples/ folder"),
    (["r={run}", "--steps", "0,7"], "step(s) [7] are not pictured in every run"),
    (["r={run}", "--steps", "zero"], "give integers"),
    (["r={run}", "--columns", "1"], "give a count >= 2"),
    (["r={run}", "--scale", "0"], "give a factor in (0, 4]"),
])
def test_bad_arguments_name_the_value_and_the_fix(script, tmp_path, args, message):
    run = _run(tmp_path, "a", [0, 500], (0, 0, 0))
    (tmp_path / "empty" / "samples").mkdir(parents=True)
    argv = [a.format(run=run, tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit, match=None) as err:
        script.main(argv)
    assert message in str(err.value)
    with pytest.raises(SystemExit, match="no step_<n>.png pictures"):
        script.main([f"e={tmp_path / 'empty'}", "--out", str(tmp_path / "y.png")])
