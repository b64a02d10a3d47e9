"""Fast paths as options: fused optimizers, data on the device, torch.compile, channels_last."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
import time

import pytest
import torch

from ganforge.loop import fastpaths
from ganforge.run.config import load_config
from ganforge.loop.data import GANDataModule, InMemoryDataset, materialize
from ganforge.loop.module import make_optimizer
from ganforge.registry.errors import ConfigError
from ganforge.run.runner import build_components, fit

from conftest import REPO


def _fit(registry, overrides):
    return fit(load_config(None, overrides, registry), progress=False, registry=registry)


def _batches(dm, n):
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


def _same(a, b):
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    return len(a) == len(b) and all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(a, b))


# -- optimizers ---------------------------------------------------------------------------------------


def test_adam_is_fused_on_the_cpu_and_takes_the_same_step():
    cfg = {"name": "adam", "lr": 1e-2, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}
    p = torch.nn.Parameter(torch.randn(5, 3))
    q = torch.nn.Parameter(p.detach().clone())
    fused = make_optimizer([p], cfg)
    plain = torch.optim.Adam([q], lr=1e-2, betas=(0.5, 0.999), foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        g = torch.randn(5, 3)
        p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert make_optimizer([torch.nn.Parameter(torch.ones(2))], dict(cfg, name="rmsprop")).defaults["foreach"] is True


# -- data on the device -------------------------------------------------------------------------------


@pytest.mark.parametrize("config,overrides", [(None, ["dataset.num_samples=100"]),
                                              ("digits-dcgan", ["dataset.labels=true", "dataset.resolution=8"]),
                                              ("stacked-digits", ["dataset.num_samples=100"])])
def test_data_on_device_gives_exactly_the_loader_batches(registry, config, overrides, monkeypatch):
    cfg = load_config(config, overrides, registry)
    ds = registry.build("dataset", cfg["dataset"], "dataset", seed=0)
    for rank in (0, 1):
        monkeypatch.setattr(GANDataModule, "world", lambda self, r=rank: (r, 2))
        loader = GANDataModule(ds, 32, 2, seed=3, on_device=False, total_iterations=20)
        device = GANDataModule(ds, 32, 2, seed=3, on_device=True, total_iterations=20)
        a, b = _batches(loader, 9), _batches(device, 9)  # several epochs of a 100-sample set
        assert all(_same(u, v) for u, v in zip(a, b))
        assert type(device.train_dataloader().dataset).__name__ == "_DeviceBatches"
    # resume: the iterator restarts at the restored iteration with the same batches
    monkeypatch.setattr(GANDataModule, "world", lambda self: (0, 1))
    resumed = GANDataModule(ds, 32, 2, seed=3, on_device=True, start=lambda: 4, total_iterations=20)
    straight = GANDataModule(ds, 32, 2, seed=3, on_device=False, total_iterations=20)
    assert all(_same(u, v) for u, v in zip(_batches(resumed, 3), _batches(straight, 7)[4:]))


def test_data_on_device_auto_rules(registry, monkeypatch):
    cfg = load_config(None, ["dataset.num_samples=100"], registry)
    ring = registry.build("dataset", cfg["dataset"], "dataset", seed=0)
    assert isinstance(ring, InMemoryDataset)
    assert GANDataModule(ring, 8, 1, 0).device_tensors() is not None  # CPU: in memory already
    assert GANDataModule(ring, 8, 1, 0, on_device=False).device_tensors() is None

    class PerItem(torch.utils.data.Dataset):  # not a declared in-memory dataset: loader unless forced
        info = ring.info

        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.full((2,), float(i))

    assert GANDataModule(PerItem(), 8, 1, 0).device_tensors() is None
    x, y = GANDataModule(PerItem(), 8, 1, 0, on_device=True).device_tensors()
    assert y is None and torch.equal(x[:, 0], torch.arange(10.0))
    # on a GPU, auto declines data that take over a quarter of the free memory
    monkeypatch.setattr(GANDataModule, "device", lambda self: torch.device("cuda"))
    free = ring.data.numel() * 4 * 4 - 8  # just under 4x the data: declines
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 10 * free))
    assert GANDataModule(ring, 8, 1, 0).device_tensors() is None
    x, _ = materialize(ring)
    assert x.data_ptr() == ring.data.data_ptr()  # a view, no copy


def test_runs_with_and_without_data_on_device_are_identical(tiny, registry):
    common = tiny + ["metrics.list=[]", "train.max_steps=6", "train.n_critic=2"]
    a = _fit(registry, common + ["name=loader", "train.data_on_device=false"])["module"]
    b = _fit(registry, common + ["name=device", "train.data_on_device=true"])["module"]
    for (k, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), k


def test_data_on_device_bad_value_names_the_key(registry):
    with pytest.raises(ConfigError, match="train.data_on_device"):
        load_config(None, ["train.data_on_device=gpu"], registry)


# -- compile ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", [["objective.name=wgan-gp"], ["objective.name=non-saturating",
                                                                    "objective.r1_weight=1.0"]])
def test_compile_is_refused_for_double_backward(tiny, registry, objective):
    cfg = load_config(None, tiny + objective + ["train.compile=true"], registry)
    name = objective[0].split("=")[1]
    with pytest.raises(ConfigError, match=rf"train.compile=true: objective '{name}'.* needs double backward.*"
                                          r"Set train.compile=false"):
        build_components(cfg, registry)


def test_compile_gives_the_eager_losses_and_plain_checkpoints(tiny, registry):
    """torch.compile on the CPU (inductor, C++): a few seconds for the ring MLPs on this machine."""
    common = tiny + ["metrics.list=[]", "train.max_steps=5", "train.log_every_n_steps=1",
                     "train.ema_halflife_images=500"]
    t0 = time.perf_counter()
    c = _fit(registry, common + ["name=compiled", "train.compile=true"])
    if time.perf_counter() - t0 > 120:
        pytest.skip(f"torch.compile took {time.perf_counter() - t0:.0f} s on this CPU")
    e = _fit(registry, common + ["name=eager"])
    assert c["module"].fast_paths["compile"] == ("generator", "discriminator") and not e["module"].fast_paths["compile"]
    assert c["module"].generator._compiled_call_impl is not None
    last = [[r for r in csv.DictReader(open(out["run_dir"] / "metrics.csv")) if r.get("d_loss")][-1] for out in (c, e)]
    for k in ("d_loss", "g_loss"):
        assert float(last[0][k]) == pytest.approx(float(last[1][k]), rel=1e-4, abs=1e-5)
    a = torch.load(c["run_dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(e["run_dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert list(a["state_dict"]) == list(b["state_dict"])  # no "_orig_mod." keys
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-4, atol=1e-5)


def test_compile_leaves_a_spectral_norm_discriminator_eager(registry, capsys):
    """torch 2.13 cannot train a compiled spectral-norm D called twice before backward (real, fake)."""
    cfg = load_config("digits-dcgan", ["generator.width=8", "discriminator.width=8", "train.compile=true"], registry)
    m = build_components(cfg, registry).module
    assert fastpaths.has_spectral_norm(m.discriminator) and not fastpaths.has_spectral_norm(m.generator)
    applied = fastpaths.apply(m, torch.device("cpu"))
    assert applied["compile"] == ("generator",)
    assert m.generator._compiled_call_impl is not None and m.discriminator._compiled_call_impl is None
    assert "compiling the generator only" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune-no-cudagraphs"])
def test_compile_mode_reaches_torch_compile_with_static_shapes(registry, monkeypatch, mode):
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: calls.append((type(self).__name__, kw)))
    cfg = load_config(None, ["train.compile=true", f"train.compile_mode={mode}"], registry)
    applied = fastpaths.apply(build_components(cfg, registry).module, torch.device("cpu"))
    assert applied["compile"] == ("generator", "discriminator") and applied["compile_mode"] == mode
    assert [kw for _, kw in calls] == [{"mode": None if mode == "default" else mode, "dynamic": False}] * 2


def test_compile_mode_without_compile_is_refused(tiny, registry):
    cfg = load_config(None, tiny + ["train.compile_mode=reduce-overhead"], registry)
    with pytest.raises(ConfigError, match=r"train.compile_mode=reduce-overhead has no effect while train.compile "
                                          r"is false. Set train.compile=true"):
        build_components(cfg, registry)
    build_components(load_config(None, tiny + ["train.compile_mode=default"], registry), registry)


@pytest.mark.parametrize("bad", ["fast", "max-autotune", "cudagraphs"])
def test_compile_mode_names_the_key_and_the_choices(registry, bad):
    with pytest.raises(ConfigError, match=rf"train.compile_mode: expected .*reduce-overhead.*, got .{bad}."):
        load_config(None, [f"train.compile_mode={bad}"], registry)


# -- channels_last ------------------------------------------------------------------------------------


def test_channels_last_leaves_outputs_and_keys_equal(registry):
    cfg = load_config("digits-dcgan", ["generator.width=8", "discriminator.width=8", "train.channels_last=true",
                                       "train.ema_halflife_images=100"], registry)
    built = build_components(cfg, registry)
    m = built.module
    G0, D0 = copy.deepcopy(m.generator).eval(), copy.deepcopy(m.discriminator).eval()
    keys = list(m.state_dict())
    applied = fastpaths.apply(m, torch.device("cpu"))
    assert applied == {"channels_last": True, "compile": (), "compile_mode": None}
    assert list(m.state_dict()) == keys
    conv = next(p for p in m.discriminator.parameters() if p.ndim == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    z = torch.randn(4, *m.generator.latent_shape)
    G, D = m.generator.eval(), m.discriminator.eval()
    with torch.no_grad():
        torch.testing.assert_close(G(z), G0(z), rtol=1e-5, atol=1e-5)
        x = G0(z)
        torch.testing.assert_close(D(x), D0(x), rtol=1e-5, atol=1e-5)
    # auto: only on CUDA, only for convolutional networks
    nets = [G0, D0]
    assert fastpaths.use_channels_last("auto", torch.device("cuda"), nets)
    assert not fastpaths.use_channels_last("auto", torch.device("cpu"), nets)
    assert not fastpaths.use_channels_last("auto", torch.device("cuda"), [torch.nn.Linear(2, 2)])


# -- train.host_malloc ------------------------------------------------------------------------------

_FAULTS = """
import resource, sys, torch
from ganforge.loop.fastpaths import keep_host_memory
applied = keep_host_memory(sys.argv[1])
def cycle():  # what an iteration does with its activations: allocate, use, free
    x = torch.empty(10 * 2**20).fill_(1.0)  # 40 MiB: over glibc's largest dynamic mmap threshold (32 MiB)
    y = x * 2
    del x, y
for _ in range(3):
    cycle()
faults = []
for _ in range(11):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cycle()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(applied, sorted(faults)[5])  # the median cycle
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_host_malloc_keep_stops_the_page_faults_of_freed_activations():
    """Each setting in a fresh interpreter (mallopt is process-wide): under glibc's defaults two freed
    40 MiB tensors are unmapped and faulted in again every cycle (2 x 10,240 pages); with ``keep`` the
    memory is reused without a fault."""
    out = {}
    for setting in ("keep", "default"):
        r = subprocess.run([sys.executable, "-c", _FAULTS, setting], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert r.returncode == 0, r.stderr[-2000:]
        applied, faults = r.stdout.split()
        out[setting] = (applied == "True", float(faults))
    assert out["keep"][0] and not out["default"][0]
    assert out["default"][1] > 10_000, out  # the pages of the two tensors, every cycle
    assert out["keep"][1] < 100, out


def test_host_malloc_reaches_the_fit_and_bad_values_name_the_key(tmp_path, registry, monkeypatch):
    for bad in ("on", "fast", "1"):
        with pytest.raises(ConfigError, match=r"train.host_malloc: .*(keep|default)"):
            load_config(None, [f"train.host_malloc={bad}"], registry)
    cfg = load_config(None, [], registry)
    assert cfg["train"]["host_malloc"] == "keep"
    from ganforge.run.resume import is_safe

    assert is_safe("train.host_malloc", cfg)  # allocation only: may change on resume
    calls = []
    monkeypatch.setattr(fastpaths, "keep_host_memory", lambda setting: calls.append(setting) or False)
    for setting in ("keep", "default"):
        _fit(registry, ["train.max_steps=2", "train.batch_size=16", "metrics.list=[]", "dataset.num_samples=64",
                        f"train.host_malloc={setting}", f"root_dir={tmp_path}"])
    assert calls == ["keep", "default"]


# -- the GPU benchmark script, on the CPU ---------------------------------------------------------------


def test_gpu_scripts_run_ganforge_from_a_checkout_without_installing_it(tmp_path):
    """benchmarks/use_checkout.sh, which gpu_check.sh and gpu_speed.sh source on a lent GPU machine: with a
    Python that has no ganforge installed (the interpreter this venv was made from) and a checkout without
    build metadata, ``use_checkout`` makes ganforge and its entry points importable."""
    base = getattr(sys, "_base_executable", None)
    probe = "from importlib.metadata import entry_points; print(len(list(entry_points(group='ganforge'))))"
    if not base or subprocess.run([base, "-I", "-c", probe], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("no interpreter without ganforge installed beside this one")
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("pyproject.toml", "ganforge", "plugins", "benchmarks"):
        (work / name).symlink_to(REPO / name)
    script = (f'PYTHON="{base}"; . benchmarks/use_checkout.sh; use_checkout || exit 4; cd "{tmp_path}"; '
              '"$PYTHON" -c "from importlib.metadata import entry_points; import ganforge, ganforge_plugins; '
              'print(sorted(e.name for e in entry_points(group=\'ganforge\')), ganforge.__file__)"')
    r = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ganforge is not installed: using this checkout" in r.stdout
    assert "'objectives'" in r.stdout and str(work / "ganforge") in r.stdout


@pytest.mark.timeout(60)
def test_gpu_benchmark_quick_on_the_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), OMP_NUM_THREADS="1")
    """The script end to end on the CPU (precision and compile variants are configs of the same path)."""
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick",
                        "--variants", "naive fp32,ganforge fp32"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import json

    res = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    variants = {(row["model"], row["variant"]) for row in res["rows"]}
    assert ("dcgan-64", "naive fp32") in variants and ("resnet-32", "ganforge fp32") in variants
    assert all(row["images_per_s"] > 0 for row in res["rows"])
    assert "images/s" in r.stdout and res["torch"] == torch.__version__
