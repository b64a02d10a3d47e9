"""GPU throughput, one card, one run: a naive fp32 PyTorch loop against ganforge's precisions and fast paths.

    python benchmarks/gpu.py                    # on a GPU machine (about 3 minutes on an H100)
    python benchmarks/gpu.py --device cpu --quick   # a smoke test of every path on the CPU

For DCGAN at 64x64 and the SNGAN ResNet at 32x32 (3 channels, non-saturating loss, Adam, generator
EMA), measures images per second (real images shown to D per second, after a warm-up) and the
peak GPU memory of:

* ``naive fp32``: a hand-written loop (same networks and initialization from the same plugins,
  data on the GPU, torch's default Adam, a loss read back every step as a logging loop does);
* ``ganforge fp32``: ``ganforge fit`` with its defaults (fused Adam, data on the device,
  channels_last on CUDA);
* ``ganforge bf16-mixed``: ``trainer.precision=bf16-mixed``;
* ``ganforge bf16+compile+cl``: bf16-mixed with ``train.compile=true`` and ``train.channels_last=true``.

``--variants`` takes other names too: ``compile`` in a name compiles (``compile-ro``: with
``train.compile_mode=reduce-overhead``, CUDA graphs), ``+cl`` / ``nocl`` turn channels_last on / off
(e.g. ``"ganforge fp32 nocl,ganforge fp32+compile nocl,ganforge bf16+compile-ro+cl"``).
``--profile`` also runs ganforge fp32 under cProfile and prints where the host's time goes.

Prints a table with the card's name and the torch version, and writes ``gpu_benchmark.json`` to
``$OUT`` when it is set. Needs torch and lightning (and ganforge's few pure-Python dependencies);
no network. ganforge runs from this checkout when it is not installed (entry points generated
from pyproject.toml, as ``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GANFORGE_PROGRESS", "0")


def use_checkout() -> None:
    """Make ``import ganforge`` and its entry points work from this checkout when not installed."""
    from importlib.metadata import entry_points

    if any(e.name == "objectives" for e in entry_points(group="ganforge")):
        return
    import importlib
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    site = Path(tempfile.mkdtemp(prefix="ganforge-site."))
    info = site / f"ganforge-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ganforge\nVersion: {project['version']}\n")
    eps = project["entry-points"]["ganforge"]
    (info / "entry_points.txt").write_text("[ganforge]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    for p in (str(REPO / "plugins"), str(REPO), str(site)):
        sys.path.insert(0, p)
    importlib.invalidate_caches()


use_checkout()

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iteration import hand_written_iteration  # noqa: E402  the hand-written loop both benchmarks time

import lightning as L  # noqa: E402

from ganforge import DataInfo, hookimpl  # noqa: E402

MODELS = {  # name: (generator, discriminator, resolution)
    "dcgan-64": ({"name": "dcgan", "latent_dim": 100, "width": 64}, {"name": "dcgan", "width": 64}, 64),
    "resnet-32": ({"name": "resnet", "latent_dim": 128, "width": 64}, {"name": "resnet", "width": 64}, 32),
}
VARIANTS = ("naive fp32", "ganforge fp32", "ganforge bf16-mixed", "ganforge bf16+compile+cl")


class RandomImages(torch.utils.data.Dataset):
    """Fixed random images in [-1, 1], held in memory (content does not matter for speed)."""

    def __init__(self, resolution: int = 32, num_samples: int = 2048, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand((num_samples, 3, resolution, resolution), generator=g) * 2 - 1
        self.info = DataInfo(sample_shape=(3, resolution, resolution), kind="image", value_range=(-1.0, 1.0),
                             name="random-images")

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]

    def tensors(self) -> tuple[torch.Tensor, None]:
        return self.x, None


class _Plugin:
    @staticmethod
    @hookimpl
    def ganforge_register_datasets(register) -> None:  # noqa: ANN001
        register("random-images", RandomImages, description="benchmark images")


def registry():
    from ganforge.registry.registry import load_registry

    return load_registry(extra=[("gpu-benchmark", _Plugin)], warn=False)


def make_config(reg, model: str, variant: str, args) -> dict:
    from ganforge.run.config import resolve

    g, d, res = MODELS[model]
    if args.quick:
        g, d = dict(g, width=8), dict(d, width=8)
    steps = args.warmup + args.iterations
    data = {
        "name": f"gpu-{model}", "seed": 0, "root_dir": args.runs,
        "dataset": {"name": "random-images", "resolution": res, "num_samples": args.num_samples},
        "generator": g, "discriminator": d, "objective": {"name": "non-saturating"},
        "train": {"batch_size": args.batch_size, "max_steps": steps, "ema_halflife_images": 10000,
                  "checkpoint_every_n_steps": 10**9,
                  # chunks of iterations end on logging steps: the timer's ends fall on them (quick: every one)
                  "log_every_n_steps": 1 if args.quick else 10},
        "metrics": {"every_n_steps": 0, "list": []}, "samples": {"every_n_steps": 10**9},
        "logger": [],
        "trainer": {"accelerator": "gpu" if args.device == "cuda" else "cpu", "devices": 1,
                    "precision": "bf16-mixed" if "bf16" in variant else "32-true"},
    }
    # Variant names spell their options: "compile", "+cl" (channels_last on), "nocl" (off); else auto.
    data["train"]["compile"] = "compile" in variant
    if "compile-ro" in variant:
        data["train"]["compile_mode"] = "reduce-overhead"
    if "+cl" in variant or "nocl" in variant:
        data["train"]["channels_last"] = "+cl" in variant
    return resolve(data, reg, "benchmarks/gpu.py")


class Timer(L.Callback):
    """Wall time of the iterations after the warm-up (synchronized with the device at both ends)."""

    handles_iteration_chunks = True  # a Lightning batch may hold several iterations (train.iterations_per_batch)

    def __init__(self, warmup: int, total: int, profile: bool = False) -> None:
        self.warmup, self.total = warmup, total
        self.t0 = self.t1 = None
        self.i0 = self.i1 = 0
        self.prof = None
        if profile:  # cProfile over the timed iterations only
            import cProfile

            self.prof = cProfile.Profile()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # noqa: ANN001
        # the first batch end at or after the warm-up, and the last one (a batch may hold several iterations)
        start = self.t0 is None and pl_module.iterations >= self.warmup
        if start or (self.t0 is not None and pl_module.iterations >= self.total):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            if start:
                self.t0, self.i0 = time.perf_counter(), pl_module.iterations
                if self.prof is not None:
                    self.prof.enable()
            else:
                self.t1, self.i1 = time.perf_counter(), pl_module.iterations
                if self.prof is not None:
                    self.prof.disable()

    def seconds(self, iterations: int) -> float:
        """The time of ``iterations`` timed iterations, from the iterations actually timed."""
        return (self.t1 - self.t0) * iterations / max(1, self.i1 - self.i0)


def run_ganforge(reg, model: str, variant: str, args, profile: bool = False) -> dict:
    from ganforge.run.runner import build_components, make_trainer

    cfg = make_config(reg, model, variant, args)
    built = build_components(cfg, reg)
    timer = Timer(args.warmup, args.warmup + args.iterations, profile=profile)
    prof = timer.prof
    with tempfile.TemporaryDirectory() as d:
        trainer = make_trainer(cfg, Path(d), built, loggers=[], progress=False)
        trainer.callbacks.append(timer)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(built.module, datamodule=built.datamodule)
    m = built.module
    out = {"seconds": timer.seconds(args.iterations), "fast_paths": m.fast_paths, "direct_steps": m._loop.get("direct"),
           "fused_adam": bool(m.optimizers(use_pl_optimizer=False)[0].defaults.get("fused"))}
    if prof is not None:
        import pstats

        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(args.profile_lines)
        out["profile"] = text.getvalue()
    return out


def run_naive(reg, model: str, args) -> dict:
    """The loop as one writes it first: fp32, default Adam, per-parameter EMA, ``.item()`` each step."""
    cfg = make_config(reg, model, "naive fp32", args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    data = reg.build("dataset", cfg["dataset"], seed=0)
    G = reg.build("generator", cfg["generator"], info=data.info, seed=0).to(device)
    D = reg.build("discriminator", cfg["discriminator"], info=data.info, seed=0).to(device)
    G_ema = copy.deepcopy(G).requires_grad_(False)
    og, od = cfg["optim"]["generator"], cfg["optim"]["discriminator"]
    opt_g = torch.optim.Adam(G.parameters(), lr=og["lr"], betas=tuple(og["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=od["lr"], betas=tuple(od["betas"]))
    x_all = data.x.to(device)
    b, latent = args.batch_size, tuple(G.latent_shape)
    beta = 0.5 ** (b / 10000)
    t0 = None
    for it in range(args.warmup + args.iterations):
        if it == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        real = x_all[torch.randint(len(x_all), (b,), device=device)]
        d_loss, g_loss = hand_written_iteration(G, D, G_ema, opt_g, opt_d, real, latent, beta)
        d_loss.item(), g_loss.item()  # the naive loop reads its losses every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - t0}


def save(args, card: str, rows: list[dict]) -> None:  # noqa: ANN001
    if not os.environ.get("OUT"):
        return
    result = {"card": card, "torch": torch.__version__, "cuda": torch.version.cuda, "batch_size": args.batch_size,
              "iterations": args.iterations, "warmup": args.warmup, "quick": args.quick, "rows": rows}
    Path(os.environ["OUT"], "gpu_benchmark.json").write_text(json.dumps(result, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny widths and few iterations (smoke test)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=200, help="timed iterations per case")
    ap.add_argument("--warmup", type=int, default=25, help="untimed iterations first (compilation happens here)")
    ap.add_argument("--num-samples", type=int, default=4096)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--profile", action="store_true", help="also profile the host side of ganforge fp32 (cProfile)")
    ap.add_argument("--profile-lines", type=int, default=30, help="--profile: functions shown, by own time")
    args = ap.parse_args()
    if args.quick:
        args.batch_size, args.iterations, args.warmup, args.num_samples = 8, 3, 2, 64
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU visible; run it on a GPU machine, or with --device cpu --quick.")
        return 2
    from ganforge.run.runner import quiet_lightning

    quiet_lightning()
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    args.runs = tempfile.mkdtemp(prefix="ganforge-gpu-bench.")
    reg = registry()
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    head = (f"card: {card} | torch {torch.__version__} (CUDA {torch.version.cuda}) | batch {args.batch_size} | "
            f"{args.iterations} timed iterations after {args.warmup} warm-up")
    print(head, flush=True)
    rows = []
    t_start = time.perf_counter()
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t_case = time.perf_counter()
            try:
                out = run_naive(reg, model, args) if variant == "naive fp32" else run_ganforge(reg, model, variant, args)
                err = None
            except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
                out, err = {"seconds": float("nan")}, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                traceback.print_exc()
            peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else float("nan")
            row = {"model": model, "variant": variant, "images_per_s": args.batch_size * args.iterations / out["seconds"],
                   "ms_per_iteration": 1e3 * out["seconds"] / args.iterations, "peak_mib": peak,
                   "case_seconds": time.perf_counter() - t_case, "error": err,
                   **{k: v for k, v in out.items() if k != "seconds"}}
            rows.append(row)
            save(args, card, rows)  # after every case: a run cut short keeps what it measured
            print(f"  {model:<10} {variant:<26} {row['images_per_s']:>10.0f} images/s  "
                  f"{row['ms_per_iteration']:>8.2f} ms/it  peak {peak:>8.0f} MiB  ({row['case_seconds']:.0f} s)"
                  + (f"  ERROR {err}" if err else ""), flush=True)
    print()
    print(head)
    print(f"{'model':<11}{'variant':<27}{'images/s':>10}{'vs naive':>10}{'peak MiB':>10}")
    for r in rows:
        base = next((x for x in rows if x["model"] == r["model"] and x["variant"] == "naive fp32"), None)
        ratio = r["images_per_s"] / base["images_per_s"] if base else float("nan")  # no naive row: no ratio
        print(f"{r['model']:<11}{r['variant']:<27}{r['images_per_s']:>10.0f}{ratio:>10.2f}{r['peak_mib']:>10.0f}")
    if args.profile:
        for model in args.models.split(","):
            out = run_ganforge(reg, model, "ganforge fp32", args, profile=True)
            print(f"\nhost profile, {model}, ganforge fp32, the {args.iterations} timed iterations "
                  f"({1e3 * out['seconds'] / args.iterations:.2f} ms/it under the profiler):")
            print(out["profile"])
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
