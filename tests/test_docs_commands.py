"""The docs are executed: every shell command in README.md and docs/*.md runs as written.

Fenced ```bash / ```console / ```sh blocks are split into commands (``\\`` continuations joined,
``# comments`` and ``$ `` prompts stripped) and run in order, one temporary directory per page (the
repository's top-level entries linked into it, as in a fresh clone, so ``runs/...`` a page creates are
there for its later commands). Training is shortened by ``GANFORGE_DOCS_MAX_STEPS`` (ganforge.run.config:
``train.max_steps`` at most N, metrics' ``num_samples`` at most 10·N), nothing else is changed.

Output a page shows is checked: lines after a ``$ command`` in a console block, numbers normalized
(``200 generator steps`` matches ``20 generator steps``), ``...`` skipping any lines. A command whose shown
output holds ``ganforge: error:`` must fail; every other command must exit 0.

A command that cannot run here carries a marker with its reason: ``<!-- docs-test: skip (reason) -->``
on the line above the block (the whole block), or ``# docs-test: skip (reason)`` ending the line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "console", "sh", "shell"}
MARKER = re.compile(r"docs-test:\s*skip\s*(?:\((?P<reason>.*)\))?")
DOCS_MAX_STEPS = 20
COMMAND_TIMEOUT = 180


@dataclass
class Command:
    page: str
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    skip: Optional[str] = None  # the reason, when marked


def _strip_comment(line: str) -> str:
    """``cmd  # comment`` -> ``cmd`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _skip_reason(text: str) -> Optional[str]:
    m = MARKER.search(text)
    if not m:
        return None
    return (m.group("reason") or "").strip()


def parse_page(text: str, page: str = "<page>") -> list[Command]:
    """The shell commands of a markdown page, in order, with shown output and skip markers."""
    lines = text.splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})\s*(\w*)", lines[i])
        if not fence:
            i += 1
            continue
        lang = fence.group(2).lower()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        body = lines[i + 1 : end]
        above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        block_skip = _skip_reason(above) if above.strip().startswith("<!--") else None
        if lang in SHELL:
            commands.extend(_parse_block(body, page, i + 2, block_skip))
        i = end + 1
    return commands


def _parse_block(body: list[str], page: str, first_line: int, block_skip: Optional[str]) -> list[Command]:
    prompted = any(line.startswith("$ ") for line in body)
    out: list[Command] = []
    k = 0
    while k < len(body):
        raw, lineno = body[k], first_line + k
        k += 1
        if prompted and not raw.startswith("$ "):
            if out and raw.strip():
                out[-1].expected.append(raw.rstrip())
            continue
        text = raw[2:] if raw.startswith("$ ") else raw
        while text.rstrip().endswith("\\") and k < len(body):  # continuation lines
            text = text.rstrip()[:-1] + " " + body[k].strip()
            k += 1
        skip = _skip_reason(text) if "docs-test" in text else None
        command = _strip_comment(text).strip()
        if not command:
            continue
        out.append(Command(page, lineno, " ".join(command.split()), skip=block_skip if block_skip is not None
                           else skip))
    return out


def _normalize(line: str) -> str:
    line = re.sub(r"\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", "#", line.strip())  # 51,200 / 0.96 / 1e-4 -> #
    return re.sub(r"\s+", " ", line)


def output_mismatch(expected: list[str], output: str) -> Optional[str]:
    """The first shown line missing from ``output`` (in order, numbers normalized; ``...`` skips), or None."""
    got = [_normalize(line) for line in output.splitlines()]
    pos = 0
    for want in expected:
        if want.strip() in ("...", "…"):
            continue
        norm = _normalize(want)
        hit = next((j for j in range(pos, len(got)) if norm in got[j]), None)
        if hit is None:
            return want.strip()
        pos = hit + 1
    return None


def all_commands() -> dict[str, list[Command]]:
    return {p.name: parse_page(p.read_text(), p.name) for p in PAGES}


# ---- the parser and the matcher themselves (fast) ----

PAGE = """\
Intro.

```bash
ganforge fit -c grid25 \\
    train.max_steps=500   # a comment
ganforge plugins   # docs-test: skip (needs a thing)
```

<!-- docs-test: skip (needs a SLURM cluster: sbatch) -->
```bash
sbatch job.sbatch
```

```yaml
name: not-a-command
```

```console
$ ganforge fit trainer.max_steps=10
ganforge: error: trainer.max_steps: managed by ganforge
$ echo '# not a comment'
```
"""


def test_parser_splits_continuations_comments_prompts_and_markers():
    cmds = parse_page(PAGE)
    assert [c.text for c in cmds] == ["ganforge fit -c grid25 train.max_steps=500", "ganforge plugins",
                                      "sbatch job.sbatch", "ganforge fit trainer.max_steps=10",
                                      "echo '# not a comment'"]
    assert [c.skip for c in cmds] == [None, "needs a thing", "needs a SLURM cluster: sbatch", None, None]
    assert cmds[3].expected == ["ganforge: error: trainer.max_steps: managed by ganforge"]
    assert cmds[0].line == 4


def test_output_matcher_normalizes_numbers_and_catches_mismatches():
    shown = ["ganforge: run directory runs/ring8/version_0 (1 process)", "...",
             "  ganforge — final metrics after 200 generator steps (51200 images)"]
    good = "x\nganforge: run directory runs/ring8/version_3 (1 process)\n...\n  ganforge — final metrics after 20 generator " \
           "steps (5120 images)\n"
    assert output_mismatch(shown, good) is None
    assert output_mismatch(shown, good.replace("generator steps", "iterations")) == shown[2].strip()
    # order matters: the final line before the run directory is a mismatch
    swapped = "final metrics after 20 generator steps (5120 images)\nganforge: run directory runs/ring8/version_0 " \
              "(1 process)\n"
    assert output_mismatch(shown, swapped) is not None


def test_every_skip_marker_has_a_reason():
    skipped = [c for cmds in all_commands().values() for c in cmds if c.skip is not None]
    for c in skipped:
        assert len(c.skip) >= 10, f"{c.page}:{c.line}: `{c.text}` is skipped without a reason"
    listing = "\n".join(f"  {c.page}:{c.line}: {c.text}  -- {c.skip}" for c in skipped)
    print(f"\n{len(skipped)} documented commands skipped:\n{listing}")
    assert all(c.text for c in skipped)


def test_docs_have_commands_to_run():
    cmds = all_commands()
    runnable = [c for page in cmds.values() for c in page if c.skip is None]
    assert len(runnable) >= 20, runnable  # the executed docs did not silently stop being parsed


# ---- running them (slow) ----


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ganforge-cache")


def _workdir(tmp_path: Path) -> Path:
    """A fresh-clone look-alike: the repository's top-level entries linked, no runs/."""
    work = tmp_path / "clone"
    work.mkdir()
    for entry in REPO.iterdir():
        if entry.name in (".git", "runs") or entry.name.startswith(".pytest"):
            continue
        (work / entry.name).symlink_to(entry)
    return work


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GANFORGE_PROGRESS="0", WANDB_MODE="offline", GANFORGE_CACHE=str(cache),
               GANFORGE_DOCS_MAX_STEPS=str(DOCS_MAX_STEPS), OMP_NUM_THREADS="1", COLUMNS="200")
    env.pop("GANFORGE_RUN_DIR", None)
    return env


def run_page(page: str, tmp_path: Path, cache: Path) -> tuple[list[str], list[tuple[float, str]]]:
    """Run one page's commands in order in a fresh-clone look-alike: (failures, timings)."""
    commands = all_commands()[page]
    work, env = _workdir(tmp_path), _env(cache)
    failures, timings = [], []
    for c in commands:
        if c.skip is not None:
            continue
        start = time.monotonic()
        proc = subprocess.run(["bash", "-c", c.text], cwd=work, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
        timings.append((time.monotonic() - start, c.text))
        output = proc.stdout + proc.stderr
        should_fail = any("ganforge: error:" in line for line in c.expected)
        where = f"{page}:{c.line}: `{c.text}`"
        if should_fail != (proc.returncode != 0):
            failures.append(f"{where} exited {proc.returncode} (expected {'failure' if should_fail else 0}):\n"
                            + output[-3000:])
            continue
        missing = output_mismatch(c.expected, output)
        if missing is not None:
            failures.append(f"{where}: shown output line not printed: {missing!r}\n--- got:\n{output[-3000:]}")
    return failures, timings


PAGE_WORKERS = 2
"""Pages run two at a time: each command is one single-threaded process (OMP_NUM_THREADS=1) that mostly
imports torch, so two pages use the two cores of the CI machine and halve the ~6.5 min these tests took
one page at a time. Pages are independent (one directory each; the shared cache is written atomically)."""


@pytest.fixture(scope="module")
def page_runs(request, tmp_path_factory, shared_cache):
    """Start every *selected* page (``-k`` respected) in a pool; each test then waits for its own page."""
    from concurrent.futures import ThreadPoolExecutor

    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_page_commands_run_as_written"
                and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=PAGE_WORKERS, thread_name_prefix="docs-page")
    futures = {page: pool.submit(run_page, page, tmp_path_factory.mktemp(f"page-{page}"), shared_cache)
               for page in dict.fromkeys(selected)}
    yield futures
    for f in futures.values():
        f.cancel()
    pool.shutdown(wait=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p.name for p in PAGES])
def test_page_commands_run_as_written(page, page_runs):
    failures, timings = page_runs[page].result()
    for seconds, text in sorted(timings, reverse=True)[:3]:
        print(f"{seconds:6.1f} s  {text}")
    assert not failures, "\n\n".join(failures)


# ---- the fixes the executed docs asked for (fast, in process) ----


def _cli(args, capsys):
    from ganforge.cli.commands import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("raw", ["0", "-3", "abc", "1.5"])
def test_docs_max_steps_bad_values_are_one_line_errors(raw, monkeypatch, registry):
    from ganforge.run.config import load_config
    from ganforge.registry.errors import ConfigError

    monkeypatch.setenv("GANFORGE_DOCS_MAX_STEPS", raw)
    with pytest.raises(ConfigError, match=rf"GANFORGE_DOCS_MAX_STEPS='{re.escape(raw)}': expected a positive"):
        load_config("digits-cgan", [], registry)


def test_docs_max_steps_caps_steps_and_samples_only_when_set(monkeypatch, registry):
    from ganforge.run.config import load_config

    monkeypatch.delenv("GANFORGE_DOCS_MAX_STEPS", raising=False)
    full = load_config("digits-cgan", [], registry)
    assert full["train"]["max_steps"] == 3000 and [m["num_samples"] for m in full["metrics"]["list"]] == [2000, 2000]
    monkeypatch.setenv("GANFORGE_DOCS_MAX_STEPS", "7")
    short = load_config("digits-cgan", ["train.max_images=640"], registry)
    assert short["train"]["max_steps"] == 7 and short["train"]["max_images"] == 7 * 64
    assert [m["num_samples"] for m in short["metrics"]["list"]] == [70, 70]
    assert load_config("digits-cgan", ["train.max_steps=3"], registry)["train"]["max_steps"] == 3  # a cap, not a set


def test_a_metric_that_cannot_apply_is_left_out_and_evaluate_still_refuses_it(tiny, tmp_path, capsys):
    import numpy as np
    import yaml

    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(512, 2)).astype(np.float32))
    own = [o for o in tiny if not o.startswith("dataset.")]
    code, out, err = _cli(["fit", *own, "dataset.name=tensor-file", f"dataset.path={pts}", "name=mine",
                           "train.max_steps=4"], capsys)
    assert code == 0, err
    assert "ganforge: note: metrics.list[0] (mode-coverage) left out: mode-coverage needs a dataset with known " \
           "true modes" in out
    run = tmp_path / "runs" / "mine" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["metrics"]["list"] == []  # what ran
    code, out, err = _cli(["evaluate", run / "checkpoints" / "last.ckpt", "--metrics", "mode-coverage"], capsys)
    assert code != 0 and "mode-coverage needs a dataset with known true modes" in err  # asked for: an error
    # a metric that fails for another reason still stops the run (not silently dropped)
    code, out, err = _cli(["fit", *tiny, "metrics.list.0.threshold_std=-1", "train.max_steps=2"], capsys)
    assert code != 0 and "threshold_std" in err


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    env = {**os.environ, "GANFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "ganforge", "fit", "-c", "digits-dcgan", f"root_dir={root}",
                    "train.max_steps=2", "metrics.list=[{name: fid, feature_extractor: digits-cnn, num_samples: 64}]",
                    "generator.width=16", "discriminator.width=16"], env=env, check=True, capture_output=True,
                   timeout=300)
    return root / "digits-dcgan" / "version_0" / "checkpoints" / "last.ckpt"


def test_evaluate_added_metrics_take_the_runs_feature_extractor(digits_ckpt, tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(["evaluate", digits_ckpt, "--metrics", "fid,prdc", "--num-samples", "64",
                           "--json", "e.json"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert res["prdc"]["protocol"]["feature_extractor"] == "digits-cnn"  # the run's, not inception-v3
    # the shared --set, and one metric's own --set over it
    code, out, err = _cli(["evaluate", digits_ckpt, "--metrics", "fid,prdc", "--num-samples", "64",
                           "--set", "feature_extractor=identity", "--set", "fid.feature_extractor=digits-cnn",
                           "--json", "f.json"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "f.json").read_text())["metrics"]
    assert res["prdc"]["protocol"]["feature_extractor"] == "identity"
    assert res["fid"]["protocol"]["feature_extractor"] == "digits-cnn"
    # bad values: no metric takes one; an unknown extractor; a key without a metric that is not shared
    code, out, err = _cli(["evaluate", digits_ckpt, "--metrics", "class-coverage", "--set",
                           "feature_extractor=digits-cnn"], capsys)
    assert code != 0 and "--set feature_extractor=digits-cnn: none of --metrics class-coverage has a feature " \
                         "extractor" in err
    code, out, err = _cli(["evaluate", digits_ckpt, "--metrics", "fid", "--num-samples", "64", "--set",
                           "feature_extractor=digits-cn"], capsys)
    assert code != 0 and "digits-cn" in err and "digits-cnn" in err and "Traceback" not in err
    code, out, err = _cli(["evaluate", digits_ckpt, "--metrics", "fid", "--set", "num_samples=5"], capsys)
    assert code != 0 and "--set num_samples=5: expected metric.param=value" in err


def test_evaluate_samples_reads_the_folder_ganforge_sample_wrote(digits_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(["sample", digits_ckpt, "--num", "40", "--out", "samples"], capsys)
    assert code == 0, err
    code, out, err = _cli(["evaluate", "--samples", "samples", "-c", "digits-dcgan", "--metrics", "fid",
                           "--set", "feature_extractor=digits-cnn"], capsys)
    assert code == 0, err
    assert "--samples samples: reading samples/samples.npz (written by ganforge sample)" in out
    assert "samples: samples (40 samples" in out
    # a folder of images without samples.npz is still read as images (mixed sizes: grid.png and images/)
    (tmp_path / "samples" / "samples.npz").unlink()
    code, out, err = _cli(["evaluate", "--samples", "samples", "-c", "digits-dcgan", "--metrics", "fid",
                           "--set", "feature_extractor=digits-cnn"], capsys)
    assert code != 0 and "have different sizes" in err


def test_make_showers_writes_a_tensor_file_dataset(tmp_path, registry):
    out = tmp_path / "s.npz"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_showers.py"), str(out), "--num", "50"], check=True,
                   capture_output=True, timeout=60)
    ds = registry.build("dataset", {"name": "tensor-file", "path": str(out), "samples_key": "images",
                                    "conditions_key": "energy"}, "dataset", seed=0)
    assert ds.info.sample_shape == (1, 16, 16) and ds.info.cond_dim == 1 and len(ds) == 50
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "make_showers.py"), str(out), "--num", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--num 1: need at least 2 showers" in bad.stderr
