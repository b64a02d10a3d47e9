"""``ganforge report``: the HTML page for one or several runs, checked as data and in a real browser."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ganforge.cli.commands import main
from ganforge.registry.errors import ConfigError
from ganforge.reporting.report import config_differences, find_runs, load_run, render, series_keys
from ganforge.run.resume import flatten


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny ring runs that differ in their objective (run once for the module)."""
    from conftest import TINY

    root = tmp_path_factory.mktemp("report") / "runs"
    for objective in ("hinge", "non-saturating"):
        assert main(["fit", *TINY, f"root_dir={root}", f"objective.name={objective}", "--no-progress"]) == 0
    runs = sorted((root / "ring8").glob("version_*"))
    assert [p.name for p in runs] == ["version_0", "version_1"]
    return runs


def test_report_page_holds_curves_pictures_metrics_and_config_differences(two_runs, tmp_path, capsys):
    out = tmp_path / "both.html"
    assert main(["report", str(two_runs[0].parent), "--out", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page.split("<svg")[0]  # nothing fetched
    for label in ("ring8/version_0", "ring8/version_1"):
        assert label in page
    # one inline SVG per logged quantity: the losses and every metric value
    for key in ("d_loss", "g_loss", "metrics/mode-coverage/modes", "metrics/mode-coverage/high_quality"):
        assert f'data-key="{key}"' in page
    assert page.count("<svg") == page.count('class="figure"')
    # both progress pictures embedded, no links to files
    assert page.count('src="data:image/png;base64,') == 2
    # config differences: exactly the objective (and nothing that is equal)
    assert "What differs between the configs" in page
    diff_table = page.split("What differs between the configs")[1].split("</table>")[0]
    assert "objective.name" in diff_table and "hinge" in diff_table and "non-saturating" in diff_table
    assert "train.batch_size" not in diff_table
    # final values with their protocol, taken from summary.json
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    modes = summary["metrics"]["mode-coverage"]["values"]["modes"]
    assert f"<td class=\"num\">{modes:.6g}</td>" in page
    assert "mode_std=0.01" in page and "threshold_std=3" in page


def test_default_output_for_one_run_is_inside_it(two_runs):
    assert main(["report", str(two_runs[1])]) == 0
    page = (two_runs[1] / "report.html").read_text()
    assert "ring8/version_1" in page and "What differs" not in page  # one run: no comparison section


def test_curves_are_the_logged_values(two_runs):
    run = load_run(two_runs[0])
    with open(two_runs[0] / "metrics.csv", newline="") as f:
        logged = {int(float(r["step"])): float(r["d_loss"]) for r in csv.DictReader(f) if r["d_loss"]}
    from ganforge.reporting.report import _series

    xs, ys = _series(run, "d_loss")
    assert dict(zip(xs, ys)) == logged and xs == sorted(logged)
    keys = series_keys([run])
    assert keys[:2] == ["d_loss", "g_loss"] and "g_steps" not in keys and not any(k.endswith("num_modes") for k in keys)


def test_config_differences_and_flatten():
    a = {"train": {"lr": 1, "steps": 5}, "metrics": {"list": [{"name": "fid"}]}, "tags": ["x", "y"]}
    b = {"train": {"lr": 2, "steps": 5}, "metrics": {"list": [{"name": "kid"}]}, "tags": ["x", "y"], "new": 1}
    assert flatten(a) == {"train.lr": 1, "train.steps": 5, "metrics.list.0.name": "fid", "tags": ["x", "y"]}
    from ganforge.reporting.report import RunData

    diffs = dict(config_differences([RunData(Path("a"), "a", config=a), RunData(Path("b"), "b", config=b)]))
    assert diffs == {"metrics.list.0.name": ["fid", "kid"], "new": ["—", 1], "train.lr": [1, 2]}


def test_non_finite_values_and_missing_files_do_not_break_the_page(tmp_path):
    run = tmp_path / "runs" / "x" / "version_0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text('{"counters": {"g_steps": 3}, "metrics": {"m": {"values": {"a": NaN, '
                                      '"b": null}, "protocol": {}}}}')
    page = render([load_run(run)])
    assert "nan" in page and "null" in page and "Nothing logged yet" in page and "No samples/progress.png" in page


@pytest.mark.parametrize("make, expect", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", "is a file, not a run directory"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no run"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, make, expect):
    target = make(tmp_path)
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert expect in err and str(target) in err and "Traceback" not in err


def test_unreadable_run_files_name_the_file(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"summary.json is not valid JSON"):
        load_run(run)
    (run / "summary.json").unlink()
    (run / "config.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"config.yaml is not UTF-8 text \(byte 6\)"):
        load_run(run)
    assert find_runs([run]) == [run]


def test_out_that_is_a_directory_is_refused(two_runs, tmp_path, capsys):
    assert main(["report", str(two_runs[0]), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# -- in a real browser ----------------------------------------------------------------------------------


def _chromium() -> str:
    """Debian's Chromium, installed when missing (root and apt); skip with the reason otherwise."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe and shutil.which("pdftotext"):
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium/pdftotext not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "poppler-utils"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if r.returncode:
            pytest.skip(f"could not install Chromium ({' '.join(cmd)}: {r.stderr.strip()[-300:]})")
    exe = shutil.which("chromium")
    assert exe, "apt-get installed chromium but it is not on PATH"
    return exe


def _browser(exe: str, profile: Path, *args: str) -> None:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={profile}", *args]
    subprocess.run(cmd, capture_output=True, timeout=180, check=True)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(two_runs, tmp_path):
    exe = _chromium()
    out = tmp_path / "report.html"
    assert main(["report", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    shot, pdf = tmp_path / "shot.png", tmp_path / "page.pdf"
    profile = tmp_path / "chromium-profile"
    _browser(exe, profile, f"--screenshot={shot}", "--window-size=1400,1400", out.as_uri())
    _browser(exe, profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", out.as_uri())

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (1400, 1400)

    def has(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(img - np.array(rgb)).sum(-1) < 30).sum())

    # The curves were drawn by the browser: matplotlib's first two colours (one per run) are on screen.
    assert has((31, 119, 180)) > 200, "no blue curve pixels: the SVG figures did not render"
    assert has((255, 127, 14)) > 200, "no orange curve pixels: the second run's curves did not render"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for expected in ("Runs", "Curves", "Final metrics and their protocols", "What differs between the configs",
                     "objective.name", "mode-coverage", "ring8/version_0", "ring8/version_1"):
        assert expected in text, f"{expected!r} not rendered"
