"""The optional metric capabilities: GeneratorMetric (the engine hands generate(n) in every evaluation) and
PictureMetric (pictures drawn after an evaluation reach the run directory and every PictureLogger), with a
third-party metric and logger installed as a fake distribution."""

from __future__ import annotations

import json

import pytest

from ganforge import GeneratorMetric, PictureMetric
from ganforge.contract.components import ComponentError
from ganforge.registry.registry import load_registry
from ganforge.run.config import load_config
from ganforge.run.runner import fit

PROBE = {
    "ganforge_probe": '''
import json
from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger
from PIL import Image
from torchmetrics import Metric

from ganforge import GANMetric, LoggerRun, hookimpl

GANFORGE_PLUGIN_API = 2


class Probe(Metric, GANMetric):
    """Asks the generator for n samples twice per rank; draws one tiny picture per evaluation."""

    full_state_update = False

    def __init__(self, n, bad_pictures):
        super().__init__()
        self.n, self.bad, self.num_samples = n, bad_pictures, 10
        for name in ("seen", "same", "shape_ok"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def observe_generator(self, generate):
        x1, y1 = generate(self.n)
        x2, _ = generate(self.n)
        self.seen += x1.shape[0]
        self.same += float(torch.equal(x1, x2))
        self.shape_ok += float(tuple(x1.shape[1:]) == (2,) and y1 is None)

    def update(self, x, y=None):
        pass

    def compute(self):
        return {"seen": float(self.seen), "same": float(self.same), "shape_ok": float(self.shape_ok)}

    def protocol(self):
        return {"metric": "probe"}

    def draw_pictures(self, directory, step):
        if self.bad:
            return {"square": directory / "never-written.png"}
        path = directory / f"square_{step}.png"
        Image.new("RGB", (4, 4)).save(path)
        return {"square": path}


def probe(n: int = 7, bad_pictures: bool = False):
    return Probe(n, bad_pictures)


class Recorder(Logger):
    name, version = "recorder", "0"

    def __init__(self, path):
        super().__init__()
        self.path = path

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_pictures(self, step, pictures):
        with open(self.path, "a") as f:
            f.write(json.dumps([step, {k: str(v) for k, v in pictures.items()}]) + "\\n")


def recorder(run: LoggerRun):
    return Recorder(Path(run.run_dir) / "pictures.jsonl")


@hookimpl
def ganforge_register_metrics(register):
    register("probe", probe)


@hookimpl
def ganforge_register_loggers(register):
    register("recorder", recorder)
''',
}


def test_generator_and_picture_metrics_through_a_fit(fake_plugins, tiny):
    fake_plugins("ganforge-probe", PROBE, {"probe": "ganforge_probe"})
    reg = load_registry(warn=False)
    metric = reg.build("metric", {"name": "probe"}, "probe")
    assert isinstance(metric, GeneratorMetric) and isinstance(metric, PictureMetric)
    overrides = [*tiny, "metrics.list=[{name: probe}]", "logger=[csv, recorder]", "samples.every_n_steps=10"]
    out = fit(load_config(None, overrides, reg), progress=False, registry=reg)
    run = out["run_dir"]
    # generate(n) gave n samples of the data's shape, the same ones on both calls (the rank's seed), per evaluation
    assert out["summary"]["metrics"]["probe"]["values"] == {"seen": 7.0, "same": 1.0, "shape_ok": 1.0}
    # the pictures: in <run>/samples/<metric id>/ and handed to the picture logger with the sample pictures
    assert sorted(p.name for p in (run / "samples" / "probe").iterdir()) == ["square_10.png", "square_20.png"]
    calls = [json.loads(line) for line in (run / "pictures.jsonl").read_text().splitlines()]
    metric_calls = [(step, pics) for step, pics in calls if "probe/square" in pics]
    assert [step for step, _ in metric_calls] == [10, 20]
    assert metric_calls[0][1] == {"probe/square": str(run / "samples" / "probe" / "square_10.png")}
    assert {step for step, pics in calls if "samples/step" in pics} == {0, 10, 20}

    bad = [*tiny, "metrics.list=[{name: probe, bad_pictures: true}]"]
    with pytest.raises(ComponentError, match=r"metric 'probe': draw_pictures\(\) returned .*never-written.png.*; "
                                             r"expected a dict of picture name → path of a PNG file it wrote"):
        fit(load_config(None, bad, reg), progress=False, registry=reg)
