"""CPU threads for training: iterations per second of the default ring run under each setting.

Each setting runs `ganforge fit` (ring8, the default experiment) in a fresh process, so the
OpenMP runtime starts with that setting, for ``--steps`` generator steps with evaluation and
pictures off; the settings are interleaved over ``--repeats`` rounds and the median is reported
with the machine's load average, which is what decides the answer on a shared machine.

    .venv/bin/python benchmarks/threads.py [--steps 400] [--repeats 3]
    .venv/bin/python benchmarks/threads.py --load 2      # add 2 busy processes (a loaded machine)

``ganforge`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; the "active" rows set it to ACTIVE,
which is what torch does without ganforge (GNU OpenMP's default: waiting threads spin).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

SETTINGS = {
    # label: (train.cpu_threads, OMP_WAIT_POLICY)
    "torch default threads, active wait": ("null", "ACTIVE"),
    "torch default threads, passive (ganforge)": ("null", None),
    "cpu_threads=1, active wait": (1, "ACTIVE"),
    "cpu_threads=1, passive (ganforge)": (1, None),
}


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def run_one(threads: object, wait_policy: str | None, steps: int, root: str) -> tuple[float, bool]:
    """``(iterations per second, whether start-up is excluded)`` of one ``ganforge fit`` process."""
    env = {**os.environ, "GANFORGE_PROGRESS": "0"}
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(k, None)
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    cmd = [sys.executable, "-m", "ganforge", "fit", f"train.max_steps={steps}", "metrics.every_n_steps=0",
           "metrics.list=[]", "samples.every_n_steps=100000", f"train.checkpoint_every_n_steps={10 * steps}",
           f"train.cpu_threads={threads}", f"root_dir={root}", "logger=csv", "--no-progress"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    m = re.search(r"trained (\d+) iterations in ([\d.]+) s", out.stdout)
    return (int(m.group(1)) / float(m.group(2)), True) if m else (steps / wall, False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400, help="generator steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the settings")
    ap.add_argument("--load", type=int, default=0, help="busy processes to start beside the runs")
    args = ap.parse_args()
    hogs = [mp.Process(target=_busy, args=(time.time() + 3600,), daemon=True) for _ in range(args.load)]
    for h in hogs:
        h.start()
    try:
        results: dict[str, list[float]] = {k: [] for k in SETTINGS}
        run_loads: dict[str, list[float]] = {k: [] for k in SETTINGS}  # 1-min load average as each run starts
        loads, timed = [], []
        with tempfile.TemporaryDirectory() as root:
            for _ in range(args.repeats):
                for label, (threads, policy) in SETTINGS.items():
                    loads.append(os.getloadavg()[0])
                    run_loads[label].append(loads[-1])
                    rate, excluded = run_one(threads, policy, args.steps, root)
                    results[label].append(rate)
                    timed.append(excluded)
    finally:
        for h in hogs:
            h.terminate()
    print(f"ring8, {args.steps} generator steps, {os.cpu_count()} cores, {args.load} extra busy processes, "
          f"load average during the runs {min(loads):.1f}–{max(loads):.1f}; median of {args.repeats} "
          f"interleaved repeats (it/s, start-up {'excluded' if all(timed) else 'included'}; each run's it/s "
          "@ the load average as it started):")
    for label, vals in results.items():
        each = ", ".join(f"{v:.1f} @{ld:.1f}" for v, ld in zip(vals, run_loads[label]))
        print(f"  {label:<44} {statistics.median(vals):8.1f} it/s   ({each})")


if __name__ == "__main__":
    main()
