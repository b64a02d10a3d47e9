"""`ganforge sample` and `ganforge evaluate`: use a checkpoint after training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="write samples of a checkpoint: a grid PNG, single PNGs and an .npz")
    s.add_argument("checkpoint")
    s.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--class", dest="klass", type=int, default=None, help="class index for conditional models")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    s.add_argument("--device", default="cpu")
    e = sub.add_parser("evaluate", help="compute metrics of a checkpoint and print them with their protocol")
    e.add_argument("checkpoint")
    e.add_argument("--metrics", default=None,
                   help="comma-separated metric names (default: the run's configured metrics)")
    e.add_argument("--set", dest="params", action="append", default=[], metavar="metric.param=value",
                   help="metric parameter, e.g. fid.feature_extractor=digits-cnn (repeatable)")
    e.add_argument("--num-samples", type=int, default=None, help="generated samples for every metric")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-ema", action="store_true")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", dest="json_out", default=None, help="also write the results to this JSON file")


def check_device(flag: str, device: str) -> None:
    """A torch device string that exists on this machine, or a ConfigError naming the flag."""
    from ganforge.plugins import ConfigError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{flag} {device}: not a device; use cpu, cuda or cuda:<index>.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{flag} {device}: no CUDA GPU is visible on this machine; use {flag} cpu.")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{flag} {device}: only {count} CUDA GPU{'s' if count != 1 else ''} visible "
                              f"(cuda:0..cuda:{count - 1}).")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"{flag} {device}: Apple's MPS backend is not available here; use {flag} cpu.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{flag} {device}: unsupported device type '{dev.type}'; use cpu or cuda.")


def _check_args(args: argparse.Namespace) -> None:
    """Bad flag values fail before the checkpoint is read, each naming the flag."""
    from ganforge.constraints import SEED_RANGE
    from ganforge.plugins import ConfigError

    if args.command == "sample":
        if args.num < 1:
            raise ConfigError(f"--num {args.num}: the number of samples must be >= 1.")
        out = Path(args.out)
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ConfigError(f"--out {args.out}: '{blocker}' is a file, not a directory; --out names the directory "
                              "the samples go to (it is created when missing).")
    if args.command == "evaluate" and args.num_samples is not None and args.num_samples < 1:
        raise ConfigError(f"--num-samples {args.num_samples}: must be >= 1.")
    if not SEED_RANGE(args.seed):
        raise ConfigError(f"--seed {args.seed}: must be {SEED_RANGE.text}.")
    check_device("--device", args.device)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.command == "sample":
        return cmd_sample(args)
    if args.command == "evaluate":
        return cmd_evaluate(args)
    raise SystemExit(f"unknown command {args.command}")


def _conditions(module: Any, n: int, klass: int | None, dataset: Any = None) -> torch.Tensor | None:
    from ganforge.plugins import ConfigError

    info = module.info
    if klass is not None:
        if info.num_classes == 0:
            raise ConfigError(f"--class {klass}: this model is not class-conditional (dataset "
                              f"'{info.name}' has no class labels).")
        if not 0 <= klass < info.num_classes:
            raise ConfigError(f"--class {klass}: out of range; classes are 0..{info.num_classes - 1}.")
        return torch.full((n,), klass, dtype=torch.long)
    if info.num_classes > 0:
        return torch.arange(n) % info.num_classes
    if info.cond_dim > 0:
        if dataset is None:
            raise ConfigError("this model is conditioned on continuous values; `ganforge sample` draws them from "
                              "the training data, which must be available (its config's dataset).")
        from ganforge.components import as_pair
        from ganforge.data import _BatchFetch

        idx = torch.randint(len(dataset), (n,), generator=torch.Generator().manual_seed(0)).tolist()
        return as_pair(_BatchFetch(dataset)[idx])[1]
    return None


def cmd_sample(args: argparse.Namespace) -> int:
    from ganforge.checkpoint import load_module
    from ganforge.imaging import image_grid, samples_picture, save_png, to_uint8_images
    from ganforge.io import atomic_path

    module = load_module(args.checkpoint, device=args.device)
    dataset = None
    if module.info.cond_dim > 0 and args.klass is None:
        from ganforge.plugins import get_registry

        cfg = module.run_config
        dataset = get_registry().build("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
    y = _conditions(module, args.num, args.klass, dataset)
    x = module.sample(args.num, y=y, seed=args.seed, ema=not args.no_ema).cpu()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{args.num} samples" + (f", class {args.klass}" if args.klass is not None else "")
    save_png(samples_picture(x, module.info, title), out / "grid.png")
    if module.info.kind == "image":
        imgs = to_uint8_images(x, tuple(module.info.value_range))
        single = out / "images"
        single.mkdir(exist_ok=True)
        for i, img in enumerate(imgs):
            save_png(image_grid(img[None], nrow=1, pad=0), single / f"{i:06d}.png")
    with atomic_path(out / "samples.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x.numpy(), **({} if y is None else {"y": y.cpu().numpy()}))
    print(f"ganforge: wrote {args.num} samples ({'EMA' if not args.no_ema and module.generator_ema is not None else 'raw'}"
          f" generator, seed {args.seed}) to {out}/: grid.png, samples.npz"
          + (", images/*.png" if module.info.kind == "image" else ""))
    return 0


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    from ganforge.plugins import ConfigError

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item}: expected metric.param=value, e.g. fid.feature_extractor=digits-cnn")
        metric, param = key.split(".", 1)
        out.setdefault(metric, {})[param] = yaml.safe_load(raw)
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ganforge.checkpoint import load_module
    from ganforge.data import GANDataModule
    from ganforge.plugins import ConfigError, get_registry

    reg = get_registry()
    module = load_module(args.checkpoint, registry=reg, device=args.device)
    cfg = module.run_config
    configured = {m["name"]: m for m in cfg["metrics"]["list"]}
    names = [n.strip() for n in args.metrics.split(",") if n.strip()] if args.metrics else list(configured)
    if not names:
        raise ConfigError("no metrics: give --metrics fid,prdc,... (the run configured none)")
    params = _parse_params(args.params)
    unknown = set(params) - set(names)
    if unknown:
        raise ConfigError(f"--set {sorted(unknown)[0]}.*: that metric is not in --metrics {','.join(names)}")
    dataset = reg.build("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
    dm = GANDataModule(dataset, cfg["train"]["batch_size"], 1, cfg["seed"])
    protocol = {"dataset": module.info.name, **module.info.protocol}
    results: dict[str, Any] = {}
    for name in names:
        spec = dict(configured.get(name, {"name": name}))
        if args.num_samples is not None:
            spec["num_samples"] = args.num_samples
        spec.update(params.get(name, {}))  # a metric's own --set wins over the global --num-samples
        metric = reg.build("metric", spec, f"--metrics {name}", info=module.info)
        if hasattr(metric, "to"):
            metric.to(args.device)
        if getattr(metric, "needs_real", False):
            metric.prepare_real(dm.real_batches(getattr(metric, "num_real", None)), protocol)
        metric.reset()
        n = int(getattr(metric, "num_samples", 1000))
        y = _conditions(module, n, None, dataset)
        x = module.sample(n, y=y, seed=args.seed, ema=not args.no_ema)
        for i in range(0, n, 500):
            metric.update(x[i : i + 500], None if y is None else y[i : i + 500].to(x.device))
        from ganforge.callbacks import metric_values

        where = f"--metrics {name} (metric '{name}' from {reg.get('metric', spec['name']).provider})"
        results[name] = {"values": metric_values(metric.compute(), where), "protocol": metric.protocol()}
        if hasattr(metric, "figure"):
            from PIL import Image

            from ganforge.imaging import save_png

            out_png = Path(args.checkpoint).resolve().parent.parent / f"{name}.png"
            fig = np.asarray(metric.figure())
            if fig.ndim == 3 and fig.shape[2] == 1:  # greyscale
                fig = fig[..., 0]
            img = Image.fromarray(fig)
            scale = max(1, 512 // max(img.width, 1))  # small images: enlarge, pixels kept sharp
            save_png(img.resize((img.width * scale, img.height * scale), Image.NEAREST), out_png)
            results[name]["figure"] = str(out_png)
    header = {"checkpoint": str(args.checkpoint), "g_steps": module.g_steps,
              "generator": "raw" if args.no_ema or module.generator_ema is None else "ema", "seed": args.seed}
    for name, r in results.items():
        vals = "  ".join(f"{k}={v:.6g}" for k, v in r["values"].items())
        print(f"{name}: {vals}")
        print(f"  protocol: {json.dumps(r['protocol'], sort_keys=True, default=str)}")
        if "figure" in r:
            print(f"  figure: {r['figure']}")
    if args.json_out:
        from ganforge.io import write_json

        write_json(args.json_out, {**header, "metrics": results})
    return 0
