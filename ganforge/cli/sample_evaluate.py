"""`ganforge sample` and `ganforge evaluate`: use a checkpoint after training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the commands: `ganforge --help` must not wait for it, and the
    import torch   # CLI sets OpenMP's environment (OMP_WAIT_POLICY) before torch starts its thread pool


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="write samples of a checkpoint: a grid PNG, single PNGs and an .npz")
    s.add_argument("checkpoint", help="a ganforge checkpoint, e.g. runs/ring8/version_0/checkpoints/last.ckpt")
    s.add_argument("--num", type=int, default=None,
                   help="number of samples (default 64); with --cond-grid, samples per grid value (default 8)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--class", dest="klass", type=int, default=None,
                   help="class index for class-conditional models; for models with classes and continuous "
                        "conditions, together with --cond or --cond-grid (alone: the conditions are drawn from "
                        "the training samples of that class)")
    s.add_argument("--cond", default=None, metavar="V[,V...]",
                   help="condition values for a model conditioned on continuous values, one per condition "
                        "dimension (e.g. --cond 0.7 or --cond 0.7,1.5), in the units of the training conditions")
    s.add_argument("--cond-grid", default=None, metavar="LO:HI:N",
                   help="a sweep over the conditions: N values from LO to HI (each comma-separated for several "
                        "dimensions), one row per value, the same noise in every row")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (the same seed gives the same samples)")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator instead of its EMA")
    s.add_argument("--device", default="cpu", help="where to run the generator: cpu, cuda or cuda:<index>")
    e = sub.add_parser("evaluate", help="compute metrics of a checkpoint, or of a folder or .npz of samples, and "
                                        "print them with their protocol")
    e.add_argument("checkpoint", nargs="?", default=None, help="a ganforge checkpoint (or give --samples)")
    e.add_argument("--samples", default=None, metavar="DIR|FILE.npz",
                   help="evaluate these samples instead of a checkpoint: a folder of PNG/JPEG images or an .npz "
                        "(array 'x', as `ganforge sample` writes it)")
    e.add_argument("--reference", default=None, metavar="DIR|FILE.npz",
                   help="with --samples: the real data to compare with, a folder of images or an .npz")
    e.add_argument("-c", "--config", default=None, metavar="CONFIG",
                   help="with --samples: a config (a path or a built-in name such as digits-dcgan) whose dataset is "
                        "the reference and whose metrics are the default; --set dataset.<param>=value overrides it")
    e.add_argument("--metrics", default=None,
                   help="comma-separated metric names (default: the run's configured metrics)")
    e.add_argument("--set", dest="params", action="append", default=[], metavar="metric.param=value",
                   help="metric parameter, e.g. fid.feature_extractor=digits-cnn (repeatable); "
                        "feature_extractor=NAME sets it for every metric that has one")
    e.add_argument("--num-samples", type=int, default=None, help="generated samples for every metric")
    e.add_argument("--seed", type=int, default=None,
                   help="sampling seed (default: the run's seed; with no flags `evaluate` reproduces summary.json)")
    e.add_argument("--no-ema", action="store_true", help="evaluate the raw generator instead of its EMA")
    e.add_argument("--world-size", type=int, default=None, metavar="W",
                   help="replay the sampling of a run trained on W processes (its summary.json: "
                        "protocol.sampling.world_size; default 1)")
    e.add_argument("--floor", action="store_true",
                   help="also compute each real-data metric on two disjoint sets of real samples at the model's "
                        "sample counts (what a perfect generator scores)")
    e.add_argument("--device", default="cpu", help="where to run generator and metrics: cpu, cuda or cuda:<index>")
    e.add_argument("--json", dest="json_out", default=None, help="also write the results to this JSON file")


def check_device(flag: str, device: str) -> None:
    """A torch device string that exists on this machine, or a ConfigError naming the flag."""
    from ganforge.run.hardware import check_device as check  # one home for the CUDA/MPS probe

    check(flag, device)


def _check_args(args: argparse.Namespace) -> None:
    """Bad flag values fail before the checkpoint is read, each naming the flag."""
    from ganforge.registry.bounds import SEED_RANGE
    from ganforge.registry.errors import ConfigError

    if args.command == "sample":
        if args.num is not None and args.num < 1:
            raise ConfigError(f"--num {args.num}: the number of samples must be >= 1.")
        args.cond_values = None if args.cond is None else parse_values("--cond", args.cond)
        args.cond_sweep = None if args.cond_grid is None else parse_cond_grid(args.cond_grid)
        if args.cond is not None and args.cond_grid is not None:
            raise ConfigError(f"--cond and --cond-grid: give one of them (--cond for "
                              "one condition vector, --cond-grid for a sweep); either may come with --class K for a "
                              "model with classes and continuous conditions.")
        if args.num is None:
            args.num = 8 if args.cond_grid is not None else 64
        out = Path(args.out)
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ConfigError(f"--out {args.out}: '{blocker}' is a file, not a directory; --out names the directory "
                              "the samples go to (it is created when missing).")
    if args.command == "evaluate" and args.num_samples is not None and args.num_samples < 1:
        raise ConfigError(f"--num-samples {args.num_samples}: must be >= 1.")
    if args.command == "evaluate":
        _check_evaluate_sources(args)
    if args.command == "evaluate" and args.world_size is not None and args.world_size < 1:
        raise ConfigError(f"--world-size {args.world_size}: must be >= 1 (the number of processes the run trained on).")
    if args.command == "evaluate" and args.samples is not None:
        for flag, given in (("--world-size", args.world_size is not None), ("--floor", args.floor),
                            ("--seed", args.seed is not None)):
            if given:
                raise ConfigError(f"{flag}: only for a checkpoint (it is about generating samples from one); "
                                  f"--samples {args.samples} are evaluated as they are.")
    if args.seed is not None and not SEED_RANGE(args.seed):
        raise ConfigError(f"--seed {args.seed}: must be {SEED_RANGE.text}.")
    check_device("--device", args.device)


def parse_values(flag: str, text: str, expect: str = "numbers separated by commas, e.g. 0.7 or 0.7,1.5",
                 shown: str | None = None) -> list[float]:
    """Comma-separated finite numbers, or a ConfigError naming the flag and its value (``shown``: the whole
    value when ``text`` is a part of it)."""
    from ganforge.registry.errors import ConfigError

    shown = text if shown is None else shown

    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"{flag} {shown}: '{part.strip()}' is not a number; expected {expect}.") from None
        if not np.isfinite(v):
            raise ConfigError(f"{flag} {shown}: '{part.strip()}' is not finite; conditions must be finite numbers.")
        out.append(v)
    return out


def parse_cond_grid(text: str) -> tuple[list[float], list[float], int]:
    """``LO:HI:N`` (LO and HI comma-separated for several condition dimensions) → ``(lo, hi, n)``."""
    from ganforge.registry.errors import ConfigError

    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--cond-grid {text}: expected LO:HI:N, e.g. --cond-grid 0:1:5 (five values from 0 to 1), "
                          "or 0,0:1,2:5 for two condition dimensions.")
    expect = "LO:HI:N with numbers, e.g. --cond-grid 0:1:5"
    lo = parse_values("--cond-grid", parts[0], expect, text)
    hi = parse_values("--cond-grid", parts[1], expect, text)
    try:
        n = int(parts[2])
    except ValueError:
        raise ConfigError(f"--cond-grid {text}: N '{parts[2]}' is not a whole number; expected {expect}.") from None
    if n < 1:
        raise ConfigError(f"--cond-grid {text}: N {n} must be >= 1 (the number of condition values).")
    if len(lo) != len(hi):
        raise ConfigError(f"--cond-grid {text}: LO has {len(lo)} value(s) but HI has {len(hi)}; give one per "
                          "condition dimension on both sides.")
    return lo, hi, n


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.command == "sample":
        return cmd_sample(args)
    if args.command == "evaluate" and args.samples is not None:
        return cmd_evaluate_samples(args)
    if args.command == "evaluate":
        return cmd_evaluate(args)
    raise SystemExit(f"unknown command {args.command}")


def _conditions(module: Any, n: int, klass: int | None, dataset: Any = None, seed: int = 0) -> torch.Tensor | None:
    """``--class``, or the conditions evaluation draws (:func:`ganforge.evaluation.core.generation_conditions`)."""
    import torch

    from ganforge.registry.errors import ConfigError

    info = module.info
    if klass is not None:
        _check_class(info, klass)
        labels = torch.full((n,), klass, dtype=torch.long)
        if info.cond_dim == 0:
            return labels
        if dataset is None:
            raise ConfigError(f"--class {klass}: this model also takes {info.cond_dim} continuous condition(s), "
                              "drawn from the training samples of that class, which must be available (its config's "
                              "dataset); or give them with --cond.")
        return _class_conditions(info, dataset, n, klass, seed)
    if info.cond_dim > 0 and dataset is None:
        raise ConfigError("this model is conditioned on continuous values; `ganforge sample` draws them from "
                          "the training data, which must be available (its config's dataset), or give --cond.")
    from ganforge.evaluation.core import generation_conditions

    return generation_conditions(info, dataset, n, seed)


def _check_class(info: Any, klass: int) -> None:
    from ganforge.registry.errors import ConfigError

    if info.num_classes == 0:
        raise ConfigError(f"--class {klass}: this model is not class-conditional (dataset "
                          f"'{info.name}' has no class labels); leave --class out.")
    if not 0 <= klass < info.num_classes:
        raise ConfigError(f"--class {klass}: out of range; classes are 0..{info.num_classes - 1}.")


def _class_conditions(info: Any, dataset: Any, n: int, klass: int, seed: int) -> torch.Tensor:
    """Rows of ``y`` drawn uniformly with replacement (seeded) from the training samples of class ``klass``,
    so the conditions follow that class's own distribution (a model with classes and conditions)."""
    import torch

    from ganforge.loop.data import materialize
    from ganforge.registry.errors import ConfigError

    y = materialize(dataset)[1]
    labels, _ = info.split_conditions(y)
    rows = y[labels == klass]
    if len(rows) == 0:
        raise ConfigError(f"--class {klass}: the training data of dataset '{info.name}' has no sample of class "
                          f"{klass} to draw conditions from; give them with --cond.")
    g = torch.Generator().manual_seed(seed)
    return rows[torch.randint(len(rows), (n,), generator=g)].float()


def _check_cond_dims(info: Any, flag: str, text: str, values: list[float], klass: int | None = None) -> None:
    """The model takes continuous conditions, as many as ``values`` (and a class with ``--class`` exactly
    when it has classes too); else a ConfigError naming ``flag``."""
    from ganforge.registry.errors import ConfigError

    if info.num_classes > 0 and info.cond_dim == 0:
        raise ConfigError(f"{flag} {text}: this model is class-conditional ({info.num_classes} classes), not "
                          f"conditioned on continuous values; use --class K (0..{info.num_classes - 1}).")
    if info.cond_dim == 0:
        raise ConfigError(f"{flag} {text}: this model is not conditional (dataset '{info.name}' has no conditions); "
                          f"leave {flag} out.")
    if len(values) != info.cond_dim:
        raise ConfigError(f"{flag} {text}: {len(values)} value{'s' if len(values) != 1 else ''} per condition, but "
                          f"the model has {info.cond_dim} condition dimension{'s' if info.cond_dim != 1 else ''}; "
                          + ("give one value." if info.cond_dim == 1 else f"give {info.cond_dim} comma-separated values."))
    if info.num_classes > 0 and klass is None:
        raise ConfigError(f"{flag} {text}: this model takes a class as well as its {info.cond_dim} condition"
                          f"{'s' if info.cond_dim != 1 else ''}; add --class K (0..{info.num_classes - 1}).")
    if klass is not None:
        _check_class(info, klass)


def _with_class(info: Any, y: torch.Tensor, klass: int | None) -> torch.Tensor:
    """``y`` of conditions with the class ``klass`` joined in front (a model with classes and conditions)."""
    import torch

    if klass is None:
        return y
    return info.join_conditions(torch.full((len(y),), klass, dtype=torch.long), y)


def _fmt(values: Any) -> str:
    return ",".join(f"{float(v):.4g}" for v in values)


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from ganforge.run.checkpoint import load_module
    from ganforge.reporting.imaging import image_grid, samples_picture, save_png, to_pil_images, to_uint8_images
    from ganforge.io import atomic_path

    from ganforge.evaluation.core import sampling_seed

    module = load_module(args.checkpoint, device=args.device)
    info = module.info
    ema = not args.no_ema
    # evaluate's noise rule (rank 0 of 1): `sample --seed S --num N` writes the samples `evaluate --seed S
    # --num-samples N` scores
    seed = sampling_seed(args.seed, 0)
    rows: torch.Tensor | None = None  # --cond-grid: one condition vector per row
    if args.cond_values is not None:
        _check_cond_dims(info, "--cond", args.cond, args.cond_values, args.klass)
        y = _with_class(info, torch.tensor([args.cond_values], dtype=torch.float32).repeat(args.num, 1), args.klass)
        title = (f"{args.num} samples, " + (f"class {args.klass}, " if args.klass is not None else "")
                 + f"conditions {_fmt(args.cond_values)}")
    elif args.cond_sweep is not None:
        lo, hi, n = args.cond_sweep
        _check_cond_dims(info, "--cond-grid", args.cond_grid, lo, args.klass)
        t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
        rows = (torch.tensor(lo, dtype=torch.float64) + t * (torch.tensor(hi, dtype=torch.float64)
                                                            - torch.tensor(lo, dtype=torch.float64))).float()
        y = _with_class(info, rows.repeat_interleave(args.num, dim=0), args.klass)
        title = ((f"class {args.klass}, " if args.klass is not None else "")
                 + f"conditions {_fmt(lo)} to {_fmt(hi)}: {n} rows of {args.num}, the same noise in every row")
    else:
        dataset = None
        if info.cond_dim > 0:  # conditions drawn from the training data (of --class K's samples, if given)
            from ganforge.registry.registry import get_registry

            cfg = module.run_config
            dataset = get_registry().build("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
        y = _conditions(module, args.num, args.klass, dataset, seed)
        title = f"{args.num} samples" + (f", class {args.klass}" if args.klass is not None else "")
    if rows is None:
        x = module.sample(args.num, y=y, seed=seed, ema=ema).cpu()
    else:  # the same seed per row: every column keeps its noise, only the conditions change
        x = torch.cat([module.sample(args.num, y=y[i * args.num:(i + 1) * args.num], seed=seed, ema=ema).cpu()
                       for i in range(rows.shape[0])])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if rows is not None and info.kind == "image" and x.dim() == 4:
        scale = max(1, 64 // x.shape[-1])
        grid = image_grid(to_uint8_images(x, tuple(info.value_range)), nrow=args.num, scale=scale, title=title,
                          row_labels=[_fmt(r) for r in rows])
    else:
        grid = samples_picture(x, info, title)
    save_png(grid, out / "grid.png")
    if info.kind == "image":
        bits = 16 if info.protocol.get("bit_depth") == 16 else 8  # 16-bit detector images stay 16-bit
        single = out / "images"
        single.mkdir(exist_ok=True)
        for i, img in enumerate(to_pil_images(x, tuple(info.value_range), bits)):
            save_png(img, single / f"{i:06d}.png")
    generator = "EMA" if ema and module.generator_ema is not None else "raw"
    meta = {"checkpoint": str(args.checkpoint), "g_steps": module.g_steps, "generator": generator.lower(),
            "seed": args.seed, "noise": "as ganforge evaluate: noise_seed(seed, 0, -7, 0)", "dataset": info.name, "value_range": list(info.value_range),
            "units": "file" if info.denormalize is not None else "training", "denormalize": info.denormalize,
            "cond_grid": None if rows is None else rows.tolist()}
    with atomic_path(out / "samples.npz") as tmp:
        with open(tmp, "wb") as f:
            # x in the units the data was stored in (tensor-file's normalization inverted); the metadata
            # is a JSON string, so the file loads with allow_pickle=False.
            np.savez(f, x=info.to_stored_units(x).float().numpy(), ganforge=np.array(json.dumps(meta)),
                     **({} if y is None else {"y": y.cpu().numpy()}))
    units = " in the data file's units" if info.denormalize is not None else ""
    print(f"ganforge: wrote {x.shape[0]} samples ({generator} generator, seed {args.seed}) to {out}/: grid.png, "
          f"samples.npz{units}" + (", images/*.png" if info.kind == "image" else ""))
    return 0


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    from ganforge.registry.errors import ConfigError

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if sep and key.strip() == "feature_extractor":  # shared by every metric that has one
            out["feature_extractor"] = yaml.safe_load(raw)
            continue
        if not sep or "." not in key:
            raise ConfigError(f"--set {item}: expected metric.param=value, e.g. fid.feature_extractor=digits-cnn "
                              "(or feature_extractor=digits-cnn for every metric that has one)")
        metric, param = key.split(".", 1)
        out.setdefault(metric, {})[param] = yaml.safe_load(raw)
    return out


def _metric_spec(reg: Any, name: str, configured: dict[str, dict[str, Any]], params: dict[str, dict[str, Any]],
                 shared: dict[str, Any]) -> dict[str, Any]:
    """The spec of metric ``name``: the run's (or config's) entry, then the shared ``--set feature_extractor=...``,
    then the metric's own ``--set``. A metric the run did not configure takes the feature extractor the run's
    metrics use (one shared extractor per run: ``--metrics fid,prdc`` on a digits run scores both with digits-cnn)."""
    spec = dict(configured.get(name, {"name": name}))
    accepts = {p.name for p in reg.get("metric", spec["name"], f"--metrics {name}").parameters()}
    if "feature_extractor" in accepts and "feature_extractor" not in spec:
        used = {m["feature_extractor"] for m in configured.values() if m.get("feature_extractor")}
        if len(used) == 1:
            spec["feature_extractor"] = used.pop()
    if "feature_extractor" in shared and "feature_extractor" in accepts:
        spec["feature_extractor"] = shared["feature_extractor"]
    spec.update(params.get(name, {}))
    spec.pop("id", None)  # the entry's id keys the output; the factory never sees it
    return spec


def _split_shared(reg: Any, params: dict[str, dict[str, Any]], names: list[str],
                  configured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pop ``--set feature_extractor=X`` (no metric prefix): the default of every metric in ``names`` (ids of
    ``configured`` entries, or registered names) that has one."""
    from ganforge.registry.errors import ConfigError

    shared = params.pop("feature_extractor", None)
    if shared is None:
        return {}
    kinds = [configured.get(n, {"name": n})["name"] for n in names]
    if not any(any(p.name == "feature_extractor" for p in reg.get("metric", k, f"--metrics {k}").parameters())
               for k in kinds):
        raise ConfigError(f"--set feature_extractor={shared}: none of --metrics {','.join(names)} has a "
                          "feature extractor; drop it, or add a metric such as fid.")
    return {"feature_extractor": shared}


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint with :func:`ganforge.evaluation.core.evaluate`, the function training uses:
    with no flags, the run's metrics, seed and generator, so the values equal ``summary.json``'s."""
    from ganforge.run.checkpoint import load_module
    from ganforge.loop.data import GANDataModule
    from ganforge.evaluation.core import evaluate, generator_used, prepare_real, real_floor
    from ganforge.run.config import metric_id
    from ganforge.registry.errors import ConfigError
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    module = load_module(args.checkpoint, registry=reg, device=args.device)
    cfg = module.run_config
    configured = {metric_id(m): m for m in cfg["metrics"]["list"]}  # keyed by entry id (default: the name)
    names = [n.strip() for n in args.metrics.split(",") if n.strip()] if args.metrics else list(configured)
    if not names:
        raise ConfigError("no metrics: give --metrics fid,prdc,... (the run configured none)")
    params = _parse_params(args.params)
    shared = _split_shared(reg, params, names, configured)
    unknown = set(params) - set(names)
    if unknown:
        raise ConfigError(f"--set {sorted(unknown)[0]}.*: that metric is not in --metrics {','.join(names)}")
    dataset = reg.build("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
    dm = GANDataModule(dataset, cfg["train"]["batch_size"], 1, cfg["seed"])
    seed = cfg["seed"] if args.seed is None else args.seed
    use_ema = bool(cfg["metrics"].get("use_ema", True)) and not args.no_ema
    specs: dict[str, dict[str, Any]] = {}
    metrics, sources = [], []
    for name in names:
        spec = _metric_spec(reg, name, configured, {}, shared)
        if args.num_samples is not None:
            spec["num_samples"] = args.num_samples
        spec.update(params.get(name, {}))  # a metric's own --set wins over the global --num-samples
        specs[name] = spec
        metrics.append((name, reg.build("metric", spec, f"--metrics {name}", info=module.info)))
        sources.append(f"--metrics {name} (metric '{spec['name']}' from {reg.get('metric', spec['name']).provider})")
    prepare_real(metrics, module.info, dm, args.device)
    results = evaluate(module, metrics, dataset, seed, use_ema=use_ema, world=args.world_size or 1,
                       sources=sources, data_seed=cfg["seed"])
    for (name, metric), where in zip(metrics, sources):
        if hasattr(metric, "figure"):
            results[name]["figure"] = _save_figure(metric, Path(args.checkpoint).resolve().parent.parent / f"{name}.png")
        if args.floor and getattr(metric, "needs_real", False):
            fresh = reg.build("metric", specs[name], f"--metrics {name}", info=module.info)
            if hasattr(fresh, "to"):
                fresh.to(args.device)
            proto = results[name]["protocol"]
            results[name]["floor"] = real_floor(fresh, module.info, dm, proto["reference"]["real_count"],
                                                proto["sampling"]["num_samples"], where)
    header = {"checkpoint": str(args.checkpoint), "g_steps": module.g_steps,
              "generator": generator_used(module, use_ema), "seed": seed, "world_size": args.world_size or 1}
    whose = " (the run's)" if args.seed is None else ""
    print(f"ganforge: {args.checkpoint} at generator step {module.g_steps}: {header['generator']} generator, "
          f"seed {seed}{whose}, sampled as {header['world_size']} rank(s)")
    for name, r in results.items():
        print(f"{name}: {_fmt_values(r['values'])}")
        if "floor" in r:
            print(f"  {_floor_line(r['floor'], r['protocol'])}")
        print(f"  protocol: {json.dumps(r['protocol'], sort_keys=True, default=str)}")
        if "figure" in r:
            print(f"  figure: {r['figure']}")
    if args.json_out:
        from ganforge.io import write_json

        write_json(args.json_out, {**header, "metrics": results})
    return 0


def _fmt_values(values: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.6g}" for k, v in values.items())


def _floor_line(floor: dict[str, Any], protocol: dict[str, Any]) -> str:
    if not floor["available"]:
        return f"floor: not available ({floor['why']})"
    a, b = floor["reference_count"], floor["compared_count"]
    line = f"floor (real vs real, {b} vs {a} disjoint real samples): {_fmt_values(floor['values'])}"
    if not floor["matched"]:
        n = protocol["reference"]["dataset_size"]
        line += (f"; NOT at the model's counts ({protocol['sampling']['num_samples']} generated vs "
                 f"{protocol['reference']['real_count']} real): the dataset has {n} samples, fewer than both "
                 f"together; for a like-for-like comparison evaluate with --num-samples {n // 2} and "
                 f"num_real={n - n // 2} (--set <metric>.num_real={n - n // 2})")
    return line


def _save_figure(metric: Any, out_png: Path) -> str:
    from PIL import Image

    from ganforge.reporting.imaging import save_png

    fig = np.asarray(metric.figure())
    if fig.ndim == 3 and fig.shape[2] == 1:  # greyscale
        fig = fig[..., 0]
    img = Image.fromarray(fig)
    scale = max(1, 512 // max(img.width, 1))  # small images: enlarge, pixels kept sharp
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    tile = getattr(metric, "real_images", None)
    if tile is not None and getattr(tile, "ndim", 0) == 4:
        img = _label_neighbour_columns(img, int(tile.shape[-1]), scale)
    save_png(img, out_png)
    return str(out_png)


def _label_neighbour_columns(img: Any, tile_w: int, scale: int, pad: int = 2, gap: int = 4) -> Any:
    """A header over the nearest-neighbour grid: which column is the generated sample and which are
    its nearest training images (the grid's geometry: ``classifier_metrics.image_grid``)."""
    from PIL import Image, ImageDraw

    from ganforge.reporting.imaging import BG, TEXT, _font

    header = 20
    out = Image.new(img.mode, (img.width, img.height + header), 255 if img.mode == "L" else BG)
    out.paste(img, (0, header))
    draw = ImageDraw.Draw(out)
    font = _font()
    ink = 0 if img.mode == "L" else TEXT
    draw.text(((pad + tile_w / 2) * scale, header - 3), "sample", fill=ink, font=font, anchor="md")
    draw.text(((pad + tile_w + pad + gap) * scale, header - 3), "its nearest training images, nearest first", fill=ink,
              font=font, anchor="ld")
    return out


# -- `ganforge evaluate --samples`: samples from anywhere against a reference ----------------------------


def _check_evaluate_sources(args: argparse.Namespace) -> None:
    """A checkpoint, or --samples with one reference (--reference or -c); paths that exist."""
    from ganforge.registry.errors import ConfigError

    if args.samples is None:
        for flag, value in (("--reference", args.reference), ("-c", args.config)):
            if value is not None:
                raise ConfigError(f"{flag} {value}: only with --samples DIR|FILE.npz (the samples to compare with it); "
                                  "a checkpoint is compared with its own run's dataset.")
        if args.checkpoint is None:
            raise ConfigError("nothing to evaluate: give a checkpoint (runs/<name>/version_<n>/checkpoints/last.ckpt), "
                              "or --samples DIR|FILE.npz with --reference DIR|FILE.npz or -c CONFIG.")
        return
    if args.checkpoint is not None:
        raise ConfigError(f"--samples {args.samples} and the checkpoint {args.checkpoint}: give one of them (a "
                          "checkpoint generates its samples; --samples evaluates samples made elsewhere).")
    if args.no_ema:
        raise ConfigError("--no-ema: only for a checkpoint; --samples are evaluated as they are.")
    if args.reference is None and args.config is None:
        raise ConfigError(f"--samples {args.samples}: give the real data to compare with: --reference DIR|FILE.npz, "
                          "or -c CONFIG to use that config's dataset (e.g. -c digits-dcgan).")
    if args.reference is not None and args.config is not None:
        raise ConfigError(f"--reference {args.reference} and -c {args.config}: give one reference, not both.")
    for flag, value in (("--samples", args.samples), ("--reference", args.reference)):
        if value is None:
            continue
        p = Path(value)
        if not p.exists():
            raise ConfigError(f"{flag} {value}: not found (relative to {Path.cwd()}); give a folder of PNG/JPEG "
                              "images or an .npz file.")
        if p.is_file() and p.suffix.lower() != ".npz":
            raise ConfigError(f"{flag} {value}: a '{p.suffix or '(no extension)'}' file; give a folder of PNG/JPEG "
                              "images or an .npz file (np.savez(path, x=samples)).")


class _TensorSource:
    """Samples held in memory with their DataInfo (a reference read from a folder or an .npz): a map-style
    dataset."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, info: Any) -> None:
        self.x, self.y, self.info = x, y, info

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Any:
        return self.x[i] if self.y is None else (self.x[i], self.y[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x, self.y


def _read_npz(flag: str, path: Path) -> tuple[torch.Tensor, torch.Tensor | None, bool, dict[str, Any]]:
    """``(x, y, in_unit_range, protocol)`` of an .npz of samples.

    Integer images (uint8, uint16) come back in [-1, 1] (``in_unit_range``); floats as stored.
    """
    import zipfile

    import torch

    from ganforge.io import sha256_file
    from ganforge.registry.errors import ConfigError

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{flag} {path}: cannot read it as a NumPy .npz file of numbers ({exc}); save the samples "
                          "with np.savez(path, x=samples).") from None
    numeric = [k for k, a in arrays.items() if a.dtype.kind in "uif" and k not in ("y", "ganforge")]
    if "x" in arrays:
        key = "x"
    elif len(numeric) == 1:
        key = numeric[0]
    else:
        raise ConfigError(f"{flag} {path}: no array named 'x' and {len(numeric)} other numeric arrays "
                          f"({', '.join(arrays) or 'none'}); save the samples as x: np.savez(path, x=samples).")
    a = arrays[key]
    if a.dtype.kind not in "uif":
        raise ConfigError(f"{flag} {path}: array '{key}' has dtype {a.dtype}; expected numbers (uint8/uint16 images, "
                          "or floats in the data's units).")
    if a.ndim == 0 or a.shape[0] == 0 or a.size == 0:
        raise ConfigError(f"{flag} {path}: array '{key}' is empty (shape {a.shape}); expected at least one sample.")
    if a.ndim > 4:
        raise ConfigError(f"{flag} {path}: array '{key}' has shape {a.shape}; expected (N, d) points or (N, H, W), "
                          "(N, C, H, W), (N, H, W, C) images.")
    image = a.ndim >= 3
    if a.ndim == 4 and a.shape[1] not in (1, 3, 4) and a.shape[-1] in (1, 3, 4):
        a = a.transpose(0, 3, 1, 2)  # channels last, as clean-fid and torch-fidelity users keep images
    in_unit_range = False
    if a.dtype.kind in "ui":
        if image and a.dtype in (np.uint8, np.uint16):
            top = 255.0 if a.dtype == np.uint8 else 65535.0
            x = torch.from_numpy(a.astype(np.float64) / (top / 2) - 1.0).float()
            in_unit_range = True
        elif image:
            raise ConfigError(f"{flag} {path}: images of dtype {a.dtype}; save them as uint8 or uint16, or as floats "
                              "in the data's units.")
        else:
            x = torch.from_numpy(a.astype(np.float64)).float()
    else:
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ConfigError(f"{flag} {path}: array '{key}' holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN "
                              "or inf); remove those samples first.")
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 3:
        x = x[:, None]
    y = None
    if "y" in arrays and arrays["y"].shape[:1] == (x.shape[0],) and arrays["y"].dtype.kind in "uif":
        ya = arrays["y"]
        y = torch.from_numpy(ya.astype(np.int64)) if ya.dtype.kind in "ui" else torch.from_numpy(ya.astype(np.float32))
    protocol = {"source": "npz", "file": path.name, "sha256": sha256_file(path), "key": key,
                "dtype": str(arrays[key].dtype), "num_samples": int(x.shape[0])}
    return x, y, in_unit_range, protocol


def _read_folder(reg: Any, flag: str, path: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """A folder of images through the `image-folder` dataset plugin: ``(x in [-1, 1], protocol)``."""
    ds = reg.build("dataset", {"name": "image-folder", "root": str(path), "channels": 3}, flag, seed=0)
    return ds.tensors()[0].float(), dict(ds.info.protocol)


def _to_channels(flag: str, value: str, x: torch.Tensor, channels: int) -> torch.Tensor:
    """Folders are read as RGB: greyscale references take one channel back (when all three agree)."""
    import torch

    from ganforge.registry.errors import ConfigError

    if x.dim() != 4 or x.shape[1] == channels:
        return x
    if channels == 1 and x.shape[1] == 3:
        if not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])):
            raise ConfigError(f"{flag} {value}: colour images, but the reference is greyscale (1 channel); give "
                              "greyscale samples.")
        return x[:, :1]
    if channels == 3 and x.shape[1] == 1:
        return x.repeat(1, 3, 1, 1)
    return x


def _load_reference(reg: Any, args: argparse.Namespace, overrides: list[str]) -> tuple[Any, dict[str, Any], list]:
    """``(dataset, description, configured metrics)`` of --reference or -c."""
    import torch

    from ganforge.contract.components import DataInfo

    if args.config is not None:
        from ganforge.run.config import load_config

        cfg = load_config(args.config, overrides, reg)
        dataset = reg.build("dataset", cfg["dataset"], "dataset", seed=cfg["seed"])
        desc = {"source": "config", "config": str(args.config), "dataset": cfg["dataset"], "seed": cfg["seed"]}
        return dataset, desc, cfg["metrics"]["list"]
    path = Path(args.reference)
    if path.is_dir():
        x, protocol = _read_folder(reg, "--reference", path)
        if torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2]):  # greyscale files stay one channel
            x = x[:, :1]
        protocol["channels"] = int(x.shape[1])
        y = None
    else:
        x, y, in_unit_range, protocol = _read_npz("--reference", path)
    kind = "image" if x.dim() == 4 else "points"
    value_range = (-1.0, 1.0) if kind == "image" else tuple(float(v) for v in torch.aminmax(x))
    info = DataInfo(sample_shape=tuple(int(s) for s in x.shape[1:]), kind=kind, value_range=value_range,  # type: ignore[arg-type]
                    name=f"reference-{protocol['source']}", protocol=protocol,
                    num_classes=int(y.max()) + 1 if y is not None and not y.is_floating_point() else 0,
                    cond_dim=int(y.reshape(len(y), -1).shape[1]) if y is not None and y.is_floating_point() else 0)
    return _TensorSource(x, y, info), {"source": protocol["source"], "path": str(args.reference)}, []


def cmd_evaluate_samples(args: argparse.Namespace) -> int:
    """Metrics of samples made elsewhere (a folder or .npz) against a reference, with training's protocols
    (the real data chosen and cached as :mod:`ganforge.evaluation.core` does; ``sampling`` names the samples)."""
    from ganforge.loop.data import GANDataModule
    from ganforge.run.config import metric_id
    from ganforge.evaluation.core import UPDATE_BATCH, data_protocol, metric_values, prepare_real, reference_protocol
    from ganforge.registry.errors import ConfigError
    from ganforge.registry.registry import get_registry

    reg = get_registry()
    params = _parse_params(args.params)
    overrides = [f"dataset.{k}={json.dumps(v)}" for k, v in params.pop("dataset", {}).items()]
    if overrides and args.config is None:
        raise ConfigError(f"--set {overrides[0]}: dataset parameters only with -c CONFIG (they override its dataset).")
    for metric, ps in params.items():
        if "num_samples" in ps:
            raise ConfigError(f"--set {metric}.num_samples: with --samples every metric sees all the samples; use "
                              "--num-samples N to take the first N.")
    dataset, ref_desc, configured_list = _load_reference(reg, args, overrides)
    info = dataset.info
    spath = Path(args.samples)
    if spath.is_dir() and (spath / "samples.npz").is_file():  # a `ganforge sample --out DIR` folder
        print(f"ganforge: --samples {args.samples}: reading {spath / 'samples.npz'} (written by ganforge sample)")
        spath = spath / "samples.npz"
    if spath.is_dir():
        x, sprot = _read_folder(reg, "--samples", spath)
        y = None
        unit_range = True
    else:
        x, y, unit_range, sprot = _read_npz("--samples", spath)
    if unit_range:  # images in [-1, 1]: to the reference's value range (images: the same)
        lo, hi = info.value_range
        x = lo + (x + 1) / 2 * (hi - lo)
    else:  # floats: the data's stored units, as `ganforge sample` writes them (tensor-file: its normalization)
        x = info.from_stored_units(x)
    if info.kind == "image" and x.dim() == 4:
        x = _to_channels("--samples", args.samples, x, info.sample_shape[0])
        sprot["channels"] = int(x.shape[1])  # as evaluated (folders are read as RGB, greyscale kept grey)
    if tuple(x.shape[1:]) != tuple(info.sample_shape):
        raise ConfigError(f"--samples {args.samples}: samples of shape {tuple(x.shape[1:])}, but the reference "
                          f"({ref_desc.get('path') or ref_desc.get('config')}) has samples of shape "
                          f"{tuple(info.sample_shape)}; compare samples and data of one shape.")
    n = x.shape[0]
    if args.num_samples is not None:
        if args.num_samples > n:
            raise ConfigError(f"--num-samples {args.num_samples}: --samples {args.samples} holds only {n} samples.")
        x, y, n = x[: args.num_samples], None if y is None else y[: args.num_samples], args.num_samples
    if y is not None and not ((info.num_classes > 0 and not y.is_floating_point())
                              or (info.cond_dim > 0 and y.is_floating_point()
                                  and y.reshape(len(y), -1).shape[1] == info.y_width)):
        y = None  # labels the reference does not have: the samples are evaluated unconditionally
    configured = {metric_id(m): m for m in configured_list}
    names = [s.strip() for s in args.metrics.split(",") if s.strip()] if args.metrics else list(configured)
    if not names:
        raise ConfigError("no metrics: give --metrics fid,kid,prdc,..." + ("" if args.config else
                          " (or -c CONFIG to use that config's metrics)"))
    shared = _split_shared(reg, params, names, configured)
    unknown = set(params) - set(names)
    if unknown:
        raise ConfigError(f"--set {sorted(unknown)[0]}.*: that metric is not in --metrics {','.join(names)}")
    data_seed = int(ref_desc.get("seed", 0))  # a config's seed picks the real subset as its training run did
    dm = GANDataModule(dataset, UPDATE_BATCH, 1, data_seed)
    samples_desc = {"generator": "none: samples read from --samples", "path": str(args.samples), **sprot,
                    "num_samples": n}
    results: dict[str, Any] = {}
    for name in names:
        spec = _metric_spec(reg, name, configured, params, shared)
        comp = reg.get("metric", spec["name"], f"--metrics {name}")
        if any(p.name == "num_samples" for p in comp.parameters()):
            spec["num_samples"] = n  # the protocol records how many samples were evaluated
        metric = reg.build("metric", spec, f"--metrics {name}", info=info)
        prepare_real([(name, metric)], info, dm, args.device)
        metric.reset()
        where = f"--metrics {name} (metric '{name}' from {comp.provider})"
        try:  # e.g. too few samples for a covariance: one line naming the metric, not a traceback
            for i in range(0, n, UPDATE_BATCH):
                metric.update(x[i : i + UPDATE_BATCH].to(args.device),
                              None if y is None else y[i : i + UPDATE_BATCH].to(args.device))
            computed = metric.compute()
        except ValueError as exc:
            raise ConfigError(f"{where} on --samples {args.samples} ({n} samples): {exc}") from None
        results[name] = {"values": metric_values(computed, where),
                         "protocol": {**metric.protocol(), "sampling": samples_desc,
                                      "reference": reference_protocol(metric, info, len(dataset), data_seed)}}
    print(f"samples: {args.samples} ({n} samples, {sprot['source']})")
    print(f"reference: {ref_desc.get('path') or ref_desc.get('config')} ({info.name}, {len(dataset)} samples)")
    for name, r in results.items():
        print(f"{name}: " + "  ".join(f"{k}={v:.6g}" for k, v in r["values"].items()))
        print(f"  protocol: {json.dumps(r['protocol'], sort_keys=True, default=str)}")
    if args.json_out:
        from ganforge.io import write_json

        write_json(args.json_out, {"samples": samples_desc,
                                   "reference": {**ref_desc, "data": data_protocol(info, len(dataset), None, data_seed)},
                                   "metrics": results})
    return 0
