"""Metric generation-speed and the shared timing code (ganforge-astro)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from ganforge import DataInfo, GeneratorMetric, NotApplicable, build_component

from ganforge_astro.metrics import generation_speed
from ganforge_astro.speed import PUBLISHED_IMAGES_PER_S, simulator_for, speed_values, time_generator, time_simulator


def _generate(ds, g):
    @torch.no_grad()
    def generate(n):
        y = ds.y[torch.arange(n) % len(ds)]
        return g(torch.randn(n, *g.latent_shape), y), y

    return generate


@pytest.fixture(scope="module")
def tiny_generator(real_small):
    g = build_component("generator", "dcgan", {"latent_dim": 8, "width": 8, "conditioning": "cbn"},
                        info=real_small.info)
    return g.eval()


def test_time_generator_counts_generation_and_decoding():
    calls = []

    def generate(n):
        time.sleep(0.01)
        calls.append(n)
        return torch.zeros(n, 3)

    def decode(x):
        time.sleep(0.01)
        return np.zeros((x.shape[0], 5))

    out = time_generator(generate, decode, batch=4, repeats=3)
    assert calls == [4, 4, 4, 4]  # one untimed warm-up, three timed rounds
    # each round sleeps >= 20 ms in all, >= 10 ms in generate: rates are bounded by that
    assert 0 < out["images_per_s"] <= 4 / 0.02 and out["images_per_s"] < out["network_images_per_s"] <= 4 / 0.01
    with pytest.raises(ValueError, match=r"time_generator: batch=0; expected an integer >= 1"):
        time_generator(generate, decode, batch=0, repeats=1)
    with pytest.raises(ValueError, match=r"generate\(4\) gave 2 images"):
        time_generator(generate, lambda x: np.zeros((2, 5)), batch=4, repeats=1)


def test_time_simulator_includes_hillas(real_small):
    sim, what = simulator_for(real_small.camera, real_small.info.protocol)
    assert what == "iact-toy with the dataset's parameters" and sim.cleaning is not None
    out = time_simulator(sim, events=5, repeats=2)
    assert out["images_per_s"] > 0
    # simulating + parametrizing is slower than either alone (per round, medians of the same rounds)
    assert out["images_per_s"] < out["simulation_images_per_s"] and out["images_per_s"] < out["hillas_images_per_s"]
    # a dataset that is not the toy (a file) gets the toy's defaults on its own camera
    _, what = simulator_for(real_small.camera, {"source": "file.npz"})
    assert "default" in what


def test_speed_values_ratios():
    v = speed_values({"images_per_s": 800.0, "network_images_per_s": 1000.0},
                     {"images_per_s": 200.0, "hillas_images_per_s": 500.0})
    assert v["ratio"] == 4.0 and v["ratio_to_published"] == 800.0 / PUBLISHED_IMAGES_PER_S == 2.0


def test_metric_times_a_tiny_generator(real_small, tiny_generator):
    m = generation_speed(real_small.info, batch=16, repeats=2, simulator_events=4)
    assert isinstance(m, GeneratorMetric)
    with pytest.raises(ValueError, match="nothing was timed"), pytest.warns(UserWarning, match="before the"):
        m.compute()  # (torchmetrics warns that update() was not called yet)
    gen = _generate(real_small, tiny_generator)
    m.observe_generator(gen)
    m.observe_generator(gen)  # a second rank (as `ganforge evaluate --world-size 2` replays it)
    m.update(torch.zeros(1, *real_small.info.sample_shape), real_small.y[:1])
    out = m.compute()
    for k in ("generator_images_per_s", "simulator_images_per_s", "generator_network_images_per_s",
              "simulator_hillas_images_per_s"):
        assert out[k] > 0 and np.isfinite(out[k]), k
    assert out["ratio"] == pytest.approx(out["generator_images_per_s"] / out["simulator_images_per_s"], rel=1e-12)
    assert out["ratio_to_published"] == pytest.approx(out["generator_images_per_s"] / 400.0, rel=1e-12)
    assert out["ranks"] == 2.0 and out["threads"] == torch.get_num_threads()
    # the values are the mean over the ranks' rows
    rows = torch.cat(m.timings).numpy()
    assert out["generator_images_per_s"] == pytest.approx(rows[:, 0].mean(), rel=1e-12)
    proto = m.protocol()
    assert proto["device"] == "cpu" and proto["batch"] == 16 and proto["repeats"] == 2
    assert proto["torch_threads"] == torch.get_num_threads() and proto["published_images_per_s"] == 400.0
    assert "mean over ranks" in proto["distributed"] and "decoding" in proto["generator"]
    assert "hillas_parameters" in proto["simulator"] and "median" in proto["rounds"]
    m.reset()  # a new evaluation: the generator is timed again, the simulator is not
    sim_before = m.simulator_timing
    m.observe_generator(gen)
    assert m.simulator_timing is sim_before and len(m.timings) == 1


def test_metric_bad_values(real_small):
    for key in ("batch", "repeats", "simulator_events"):
        with pytest.raises(ValueError, match=rf"generation-speed: {key}=0; expected a positive integer"):
            generation_speed(real_small.info, **{key: 0})
    with pytest.raises(NotApplicable, match="generation-speed: dataset 'ring' is not an IACT dataset"):
        generation_speed(DataInfo(sample_shape=(2,), name="ring"))
