"""The training module: counters, resume equivalence, non-finite handling, EMA, stopping."""

from __future__ import annotations

import contextlib
import csv
import json

import pytest
import torch

from conftest import fit_with_callbacks
from ganforge.run.config import load_config
from ganforge.loop.module import GANModule, NonFiniteError, noise_seed
from ganforge.registry.errors import ConfigError
from ganforge.run.runner import fit


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _fit(registry, overrides, resume=None):
    return fit(load_config(None, overrides, registry), resume=resume, progress=False, registry=registry)


def test_counters_and_run_directory(tiny, registry, tmp_path):
    out = _fit(registry, tiny + ["train.n_critic=2", "train.max_steps=12", "name=counters"])
    run = out["run_dir"]
    assert run == tmp_path / "runs" / "counters" / "version_0"
    m = out["module"]
    assert (m.g_steps, m.d_steps, m.iterations) == (12, 24, 12)
    assert m.images_seen == 12 * 2 * 64  # every real image shown to D counts
    for f in ("config.yaml", "metrics.csv", "checkpoints/last.ckpt", "summary.json", "samples/progress.png",
              "samples/step_0000000.png"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counters"]["g_steps"] == 12
    mc = summary["metrics"]["mode-coverage"]
    assert set(mc["values"]) >= {"modes", "high_quality", "kl_uniform"}
    assert mc["protocol"]["num_samples"] == 500
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(r.get("metrics/mode-coverage/modes") for r in rows)
    assert max(float(r["g_steps"]) for r in rows if r.get("g_steps")) == 12
    # a second run of the same name gets the next version
    out2 = _fit(registry, tiny + ["train.max_steps=2", "name=counters"])
    assert out2["run_dir"].name == "version_1"


def test_stop_on_images(tiny, registry):
    out = _fit(registry, tiny + ["train.max_steps=null", "train.max_images=640"])
    assert out["module"].images_seen == 640 and out["module"].g_steps == 10


@pytest.mark.parametrize("objective", ["non-saturating", "wgan-gp"])
def test_resume_gives_the_same_weights_as_a_straight_run(tiny, registry, tmp_path, objective):
    """N steps, stop, resume, N more == 2N straight: bit for bit on CPU (same threads, same data,
    noise seeded by (seed, rank, iteration), optimizers, EMA and counters restored)."""
    common = tiny + [f"objective.name={objective}", "train.ema_halflife_images=500", "metrics.list=[]",
                     "train.checkpoint_every_n_steps=1000"]
    straight = _fit(registry, common + ["name=straight", "train.max_steps=16"])
    first = _fit(registry, common + ["name=resumed", "train.max_steps=8"])
    ckpt = first["run_dir"] / "checkpoints" / "last.ckpt"
    second = _fit(registry, common + ["name=resumed", "train.max_steps=16"], resume=str(ckpt))
    assert second["run_dir"] == first["run_dir"]  # continues in the same directory
    a = _state(straight["run_dir"] / "checkpoints" / "last.ckpt")
    b = _state(second["run_dir"] / "checkpoints" / "last.ckpt")
    assert a["ganforge"]["counters"] == b["ganforge"]["counters"]
    assert set(a["state_dict"]) == set(b["state_dict"])
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # metrics.csv keeps the first half's rows and continues
    rows = list(csv.DictReader(open(second["run_dir"] / "metrics.csv")))
    steps = [float(r["g_steps"]) for r in rows if r.get("g_steps")]
    assert steps == sorted(steps) and steps[0] == 5 and steps[-1] == 16


def test_resume_auto_takes_the_newest_checkpoint(tiny, registry):
    first = _fit(registry, tiny + ["name=auto", "train.max_steps=6", "metrics.list=[]"])
    second = _fit(registry, tiny + ["name=auto", "train.max_steps=9", "metrics.list=[]"], resume="auto")
    assert second["run_dir"] == first["run_dir"] and second["module"].g_steps == 9


def test_resume_errors(tiny, registry, tmp_path):
    with pytest.raises(ConfigError, match=r"--resume nope.ckpt: no such checkpoint file"):
        _fit(registry, tiny, resume="nope.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ConfigError, match=r"checkpoint '.*corrupt.ckpt' cannot be read: it is not a PyTorch checkpoint, or "
                                          r"it is corrupt \(UnpicklingError"):
        _fit(registry, tiny, resume=str(corrupt))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match="was not written by ganforge"):
        _fit(registry, tiny, resume=str(foreign))


def _poison(monkeypatch, at_iteration: int):
    """NaN data in one iteration (``GANModule.iteration``: one per batch, or several per Lightning batch)."""
    original = GANModule.iteration

    def iteration(self, batch):
        if self.iterations == at_iteration:
            batch = batch * float("nan")
        return original(self, batch)

    monkeypatch.setattr(GANModule, "iteration", iteration)


def test_nonfinite_stops_with_a_message_after_saving_the_last_good_state(tiny, registry, monkeypatch):
    _poison(monkeypatch, 5)
    with pytest.raises(NonFiniteError) as exc:
        _fit(registry, tiny + ["name=nan", "train.max_steps=10"])
    msg = str(exc.value)
    assert "discriminator loss is nan at iteration 5 (generator step 5, discriminator step 5)" in msg
    assert "train.on_nonfinite=skip" in msg and "--resume" in msg
    path = msg.split("saved to ")[1].split(";")[0]
    state = _state(path)
    assert state["ganforge"]["counters"]["g_steps"] == 5
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_nonfinite_skip_policy_skips_and_counts(tiny, registry, monkeypatch):
    _poison(monkeypatch, 3)
    out = _fit(registry, tiny + ["train.on_nonfinite=skip", "train.max_steps=8"])
    m = out["module"]
    assert m.skipped_steps == 1 and m.d_steps == m.iterations - 1
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_consecutive_skips_are_capped(tiny, registry, monkeypatch):
    """Broken data from iteration 2 on: every discriminator step skips; the 4th in a row stops the run."""
    original = GANModule.iteration
    monkeypatch.setattr(GANModule, "iteration",
                        lambda self, b: original(self, b * float("nan") if self.iterations >= 2 else b))
    with pytest.raises(NonFiniteError) as exc:
        _fit(registry, tiny + ["name=cap", "train.on_nonfinite=skip", "train.max_consecutive_skips=3",
                               "train.max_steps=20", "metrics.list=[]"])
    msg = str(exc.value)
    assert ("discriminator loss is nan at iteration 5 (generator step 5, discriminator step 2), after 3 skipped "
            "discriminator steps in a row (train.max_consecutive_skips=3)") in msg
    assert "raise train.max_consecutive_skips" in msg
    c = _state(msg.split("saved to ")[1].split(";")[0])["ganforge"]["counters"]
    assert (c["iterations"], c["g_steps"], c["d_steps"], c["skipped_steps"]) == (5, 5, 2, 3)
    with pytest.raises(ConfigError, match=r"train.max_consecutive_skips"):
        load_config(None, ["train.max_consecutive_skips=-1"], registry)


class _SyncCounter:
    """Counts host syncs (``item``, ``tolist``, ``bool``, ``float``, ``int`` of a tensor) per iteration,
    and in all of each ``training_step`` (which may run several iterations and gathers their batches)."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        self.active, self.count, self.per_step = False, 0, []
        self.in_step, self.step_count, self.per_batch = False, 0, []
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))
        iteration, step = GANModule.iteration, GANModule.training_step

        def counted_iteration(module, batch):
            self.active, self.count = True, 0
            try:
                return iteration(module, batch)
            finally:
                self.active = False
                self.per_step.append((module.g_steps, self.count))

        def training_step(module, batch, batch_idx):
            self.in_step, self.step_count, first = True, 0, len(self.per_step)
            try:
                return step(module, batch, batch_idx)
            finally:
                self.in_step = False
                self.per_batch.append((self.step_count, sum(n for _, n in self.per_step[first:])))

        monkeypatch.setattr(GANModule, "iteration", counted_iteration)
        monkeypatch.setattr(GANModule, "training_step", training_step)

    def _counting(self, original):
        def method(t, *args, **kwargs):
            if self.active:
                self.count += 1
            if self.in_step:
                self.step_count += 1
            return original(t, *args, **kwargs)
        return method


@pytest.mark.parametrize("policy,per_batch", [("stop", 16), ("skip", 16), ("stop", 1)])
def test_no_host_sync_in_a_non_logging_iteration(tiny, registry, monkeypatch, policy, per_batch):
    """Finiteness is decided on the device: only sync points (every 5th step here: logging,
    evaluation and pictures; the end) read tensors on the host, bad steps included; gathering a
    chunk's batches (train.iterations_per_batch) reads nothing either."""
    counter = _SyncCounter(monkeypatch)
    if policy == "skip":
        _poison(monkeypatch, 3)
    out = _fit(registry, tiny + [f"train.on_nonfinite={policy}", "train.max_steps=12", "train.grad_clip=10",
                                  "train.ema_halflife_images=500", "objective.name=non-saturating",
                                  "objective.r1_weight=0.1", "objective.r1_every=4",
                                  f"train.iterations_per_batch={per_batch}"])
    assert out["module"].skipped_steps == (1 if policy == "skip" else 0)
    assert out["module"].fast_paths["iterations_per_batch"] == per_batch
    assert [g for g, _ in counter.per_step] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    syncs = dict(counter.per_step)
    assert all(n == 0 for g, n in syncs.items() if g % 5 and g != 12), syncs
    assert all(syncs[g] >= 1 for g in (5, 10, 12)), syncs  # the counter does see the sync points
    # Lightning batches: one per iteration, or the chunks [1], [2..5], [6..10], [11, 12] (ends at sync points)
    assert len(counter.per_batch) == (12 if per_batch == 1 else 4), counter.per_batch
    assert all(total == inside for total, inside in counter.per_batch), counter.per_batch  # none outside iterations


@contextlib.contextmanager
def _cuda_sync_debug(mode):
    """The block runs under ``torch.cuda.set_sync_debug_mode(mode)``; the previous mode is restored."""
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


def _sync_free(g_step: int) -> bool:
    """Whether generator step ``g_step`` of the 12-step CUDA fits below is no sync point (every 5th, the end)."""
    return bool(g_step % 5) and g_step != 12


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_no_cuda_sync_in_a_non_logging_iteration(tiny, registry, monkeypatch, policy):
    """On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` raises at any synchronizing call:
    every iteration that is not a sync point (every 5th step here, and the end) runs under it."""
    iteration, strict = GANModule.iteration, []

    def strict_iteration(module, batch):
        g = module.g_steps + 1
        if not _sync_free(g):
            return iteration(module, batch)
        strict.append(g)
        with _cuda_sync_debug("error"):
            return iteration(module, batch)

    monkeypatch.setattr(GANModule, "iteration", strict_iteration)
    if policy == "skip":
        _poison(monkeypatch, 3)
    out = _fit(registry, tiny + ["trainer.accelerator=gpu", "trainer.devices=1", f"train.on_nonfinite={policy}",
                                  "train.max_steps=12", "train.grad_clip=10", "objective.name=non-saturating",
                                  "objective.r1_weight=0.1", "objective.r1_every=4"])
    assert strict == [1, 2, 3, 4, 6, 7, 8, 9, 11] and out["module"].g_steps == 12
    assert out["module"].skipped_steps == (1 if policy == "skip" else 0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_cuda_sync_in_a_training_step_outside_its_sync_point(tiny, registry, monkeypatch):
    """The whole ``training_step`` of a chunk of iterations (``train.iterations_per_batch``) runs
    under ``set_sync_debug_mode("error")``, the gather of each iteration's batch included; only the
    iteration that is a sync point (every 5th step here, and the end) runs without it."""
    step, iteration, strict = GANModule.training_step, GANModule.iteration, []

    def strict_step(module, batch, batch_idx):
        with _cuda_sync_debug("error"):
            return step(module, batch, batch_idx)

    def iteration_outside_sync_points(module, batch):
        g = module.g_steps + 1
        if _sync_free(g):
            strict.append(g)
            return iteration(module, batch)
        with _cuda_sync_debug("default"):
            return iteration(module, batch)

    monkeypatch.setattr(GANModule, "training_step", strict_step)
    monkeypatch.setattr(GANModule, "iteration", iteration_outside_sync_points)
    out = _fit(registry, tiny + ["trainer.accelerator=gpu", "trainer.devices=1", "train.max_steps=12",
                                  "train.iterations_per_batch=16", "objective.name=non-saturating",
                                  "objective.r1_weight=0.1", "objective.r1_every=4"])
    assert out["module"].fast_paths["iterations_per_batch"] == 16
    assert strict == [1, 2, 3, 4, 6, 7, 8, 9, 11] and out["module"].g_steps == 12


def test_lazy_r1_runs_dreg_every_k_discriminator_steps(tiny, registry, monkeypatch):
    from ganforge_plugins.objectives.losses import NonSaturating

    calls = []
    original = NonSaturating.discriminator_regularization

    def spy(self, d, real, fake, y):
        calls.append(len(calls))
        return original(self, d, real, fake, y)

    monkeypatch.setattr(NonSaturating, "discriminator_regularization", spy)
    out = _fit(registry, tiny + ["objective.name=non-saturating", "objective.r1_weight=0.1", "objective.r1_every=4",
                                  "train.n_critic=2", "train.max_steps=6", "metrics.list=[]"])
    assert out["module"].d_steps == 12 and len(calls) == 3  # D steps 0, 4 and 8
    assert "train/d/r1" in open(out["run_dir"] / "metrics.csv").readline()


def test_grad_clip_limits_the_gradient_norm(tiny, registry):
    out = _fit(registry, tiny + ["train.grad_clip=1e-3", "train.max_steps=3", "metrics.list=[]"])
    assert out["module"].last_grad_norm is not None


def test_noise_differs_per_rank_and_step_and_is_reproducible():
    seeds = {noise_seed(0, r, i, s) for r in range(2) for i in range(3) for s in range(2)}
    assert len(seeds) == 12
    assert noise_seed(1, 0, 0, 0) == noise_seed(1, 0, 0, 0)


def test_bf16_mixed_precision_runs(tiny, registry):
    out = _fit(registry, tiny + ["trainer.precision=bf16-mixed", "train.max_steps=4", "train.grad_clip=10",
                                  "metrics.list=[]"])
    assert out["module"].g_steps == 4


def test_lr_decay_applies_to_both_optimizers(tiny, registry):
    out = _fit(registry, tiny + ["train.lr_decay=linear", "train.lr_decay_start=0.0", "train.max_steps=10",
                                  "metrics.list=[]"])
    opt_g, opt_d = out["module"].optimizers(use_pl_optimizer=False)
    base = out["module"].optim_cfg["generator"]["lr"]
    assert opt_g.param_groups[0]["lr"] == pytest.approx(base * 1 / 10)  # set before the 10th step
    with pytest.raises(ConfigError, match="train.lr_decay: needs train.max_steps"):
        load_config(None, ["train.lr_decay=linear", "train.max_steps=null", "train.max_images=100"], registry)


def test_batch_size_must_divide_by_the_world_size(tiny, registry, monkeypatch):
    import lightning as L

    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: 3))
    with pytest.raises(ConfigError, match=r"train.batch_size=64 is the global batch and must divide by the 3 "
                                          r"processes .* e.g. 66"):
        _fit(registry, tiny)


def test_empty_dataset_is_a_config_error(tiny, tmp_path):
    """A third-party dataset that comes back empty fails before training, naming the section."""
    import types

    import torch

    from ganforge import DataInfo, hookimpl
    from ganforge.registry.registry import load_registry

    class Empty(torch.utils.data.Dataset):
        info = DataInfo(sample_shape=(2,))

        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise IndexError(i)

    plugin = types.SimpleNamespace(ganforge_register_datasets=hookimpl(lambda register: register("empty", Empty)))
    reg = load_registry(extra=[("empty-plugin", plugin)], warn=False)
    with pytest.raises(ConfigError, match=r"dataset \(empty\): the dataset is empty \(0 samples\); check the "
                                          r"dataset section's parameters"):
        _fit(reg, [o for o in tiny if not o.startswith("dataset.")] + ["dataset.name=empty", "metrics.list=[]"])


def test_summary_records_the_objective_and_what_the_loop_read_from_it(tiny, registry):
    out = _fit(registry, tiny + ["objective.name=non-saturating", "objective.r1_weight=0.1", "objective.r1_every=4",
                                  "train.n_critic=2", "train.max_steps=2", "metrics.list=[]"])
    record = json.loads((out["run_dir"] / "summary.json").read_text())["objective"]
    assert record == {"name": "non-saturating", "protocol": out["module"].objective.protocol(), "n_critic": 2,
                      "reg_every": 4, "weight_clip": None, "needs_double_backward": True}
    assert record["protocol"]["r1_weight"] == 0.1
    wgan = _fit(registry, tiny + ["objective.name=wgan", "train.max_steps=1", "metrics.list=[]"])
    record = json.loads((wgan["run_dir"] / "summary.json").read_text())["objective"]
    assert (record["name"], record["n_critic"], record["weight_clip"]) == ("wgan", 5, 0.01)  # max(train, objective)


def test_a_regularized_generator_adds_its_penalty_to_every_generator_phase(tiny, registry):
    """The Generator protocol's optional capability (RegularizedGenerator): called once per generator
    phase, added to the generator loss, logged as train/g/regularization."""
    import types

    from torch import nn

    from ganforge import hookimpl
    from ganforge.contract.components import RegularizedGenerator
    from ganforge.registry.registry import load_registry

    class Linear(nn.Module):
        latent_shape = (2,)

        def __init__(self, weight: float = 0.0) -> None:
            super().__init__()
            self.lin, self.weight, self.penalties = nn.Linear(2, 2), weight, []

        def forward(self, z, y=None):
            return self.lin(z)

    class Regularized(Linear):
        def regularization_loss(self):
            loss = self.weight * self.lin.weight.pow(2).sum()
            self.penalties.append(float(loss.detach()))
            return loss

    def register(register):
        register("plain-linear", Linear)
        register("reg-linear", Regularized)

    plugin = types.SimpleNamespace(ganforge_register_generators=hookimpl(register))
    reg = load_registry(extra=[("reg-plugin", plugin)], warn=False)
    assert isinstance(Regularized(), RegularizedGenerator) and not isinstance(Linear(), RegularizedGenerator)
    base = [o for o in tiny if not o.startswith("generator.")] + ["train.max_steps=6", "metrics.list=[]",
                                                                  "train.log_every_n_steps=1"]
    out = _fit(reg, base + ["generator.name=reg-linear", "generator.weight=100.0", "name=reg"])
    G = out["module"].generator
    assert len(G.penalties) == 6
    rows = [r for r in csv.DictReader(open(out["run_dir"] / "metrics.csv")) if r.get("g_loss")]
    assert [float(r["train/g/regularization"]) for r in rows] == pytest.approx(G.penalties, rel=1e-5)
    plain = _fit(reg, base + ["generator.name=plain-linear", "name=plain"])
    assert "train/g/regularization" not in open(plain["run_dir"] / "metrics.csv").readline()
    # the penalty (100 ||W||^2) is in the gradient: it falls at every step, and ends below the plain run's
    assert all(a > b for a, b in zip(G.penalties, G.penalties[1:]))
    assert G.lin.weight.norm() < plain["module"].generator.lin.weight.norm()  # the same start and data


def test_an_iteration_is_discriminator_phases_then_the_generator_phase_then_the_ema(tiny, registry, monkeypatch):
    from ganforge.loop.ema import GeneratorEMA

    calls = []
    d_phase, g_phase, ema_update = GANModule.discriminator_phase, GANModule.generator_phase, GeneratorEMA.update

    def spy_d(self, opt, real, y, it, k):
        calls.append(("D", it, k, real.shape[0]))
        return d_phase(self, opt, real, y, it, k)

    def spy_g(self, opt, real, y, it):
        calls.append(("G", it, real.shape[0]))
        return g_phase(self, opt, real, y, it)

    def spy_ema(self, images_seen, live=None):
        calls.append(("EMA", images_seen))
        return ema_update(self, images_seen, live)

    monkeypatch.setattr(GANModule, "discriminator_phase", spy_d)
    monkeypatch.setattr(GANModule, "generator_phase", spy_g)
    monkeypatch.setattr(GeneratorEMA, "update", spy_ema)
    _fit(registry, tiny + ["train.n_critic=3", "train.max_steps=2", "train.ema_halflife_images=500",
                           "metrics.list=[]"])
    # each iteration's batch (3 x 64) is cut into one part per discriminator phase; G uses the last part
    assert calls == [("D", 0, 0, 64), ("D", 0, 1, 64), ("D", 0, 2, 64), ("G", 0, 64), ("EMA", 192),
                     ("D", 1, 0, 64), ("D", 1, 1, 64), ("D", 1, 2, 64), ("G", 1, 64), ("EMA", 384)]


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_norms_are_logged_on_logging_steps_only(tiny, registry, monkeypatch, clip):
    """train/g/grad_norm and train/d/grad_norm are the total gradient norms (before clipping) of
    the last G and D steps of each logged iteration, measured only there (issue 10: the
    saturating loss's vanishing generator gradient, as a number)."""
    seen = []  # (g_steps before the step, network, true norm) of every optimizer step
    original = GANModule.on_before_optimizer_step

    def spy(self, optimizer):
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        which = "g" if params[0] is next(self.generator.parameters()) else "d"
        true = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in params))
        seen.append((self.g_steps, which, float(true)))
        original(self, optimizer)

    monkeypatch.setattr(GANModule, "on_before_optimizer_step", spy)
    measured = []
    total_norm = torch.nn.utils.get_total_norm
    monkeypatch.setattr(torch.nn.utils, "get_total_norm", lambda *a, **k: measured.append(1) or total_norm(*a, **k))
    extra = [] if clip is None else [f"train.grad_clip={clip}"]
    out = _fit(registry, tiny + extra + ["train.n_critic=2", "train.max_steps=10", "train.log_every_n_steps=4",
                                         "metrics.list=[]"])
    rows = {int(float(r["step"])): r for r in csv.DictReader(open(out["run_dir"] / "metrics.csv"))}
    assert sorted(rows) == [4, 8, 10]
    for step, r in rows.items():
        # G's step of iteration `step` saw g_steps = step - 1; D's last of its two steps came just before it
        g_true = [n for s, w, n in seen if s == step - 1 and w == "g"]
        d_true = [n for s, w, n in seen if s == step - 1 and w == "d"]
        assert len(g_true) == 1 and len(d_true) == 2
        assert float(r["train/g/grad_norm"]) == pytest.approx(g_true[0], rel=1e-5)
        assert float(r["train/d/grad_norm"]) == pytest.approx(d_true[-1], rel=1e-5)
        if clip is not None:
            assert g_true[0] > clip  # the norm before clipping, not the clipped one
    # no extra work on the other steps: 2 norms per logged iteration, or none beyond the clipping
    assert len(measured) == (0 if clip else 2 * len(rows))




def test_the_last_logged_row_has_gradient_norms_when_max_images_ends_the_run(tiny, registry):
    """A run stopped by train.max_images logs its last step although it is no multiple of
    log_every_n_steps; the gradient norms are measured in that iteration too (decided before it runs)."""
    out = _fit(registry, tiny + ["train.batch_size=32", "train.max_steps=null", "train.max_images=224",
                                 "train.log_every_n_steps=4", "metrics.list=[]"])
    rows = {int(float(r["step"])): r for r in csv.DictReader(open(out["run_dir"] / "metrics.csv"))}
    assert sorted(rows) == [4, 7]  # 224 images / 32 per iteration = 7 generator steps
    for r in rows.values():
        assert float(r["train/g/grad_norm"]) > 0 and float(r["train/d/grad_norm"]) > 0


# -- the direct backward/step path (no Lightning hook dispatch when nothing listens) ----------------------


class _Listener(__import__("lightning").Callback):
    """A callback that implements the per-step hooks: the loop must then take Lightning's path."""

    def __init__(self) -> None:
        self.calls = {"on_before_backward": 0, "on_after_backward": 0, "on_before_optimizer_step": 0}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["on_before_optimizer_step"] += 1


@pytest.mark.parametrize("extra", [[], ["train.grad_clip=0.05", "train.on_nonfinite=skip"],
                                   ["trainer.precision=bf16-mixed"]])
def test_direct_steps_equal_lightnings_hooked_steps_bit_for_bit(registry, tiny, tmp_path, extra):
    """Same weights, optimizer states, counters and Lightning global_step with and without the
    hook dispatch; a callback that implements the hooks gets every call (Lightning's path)."""
    over = tiny + ["metrics.list=[]", "train.max_steps=6", "train.log_every_n_steps=2",
                   "train.ema_halflife_images=500"] + extra
    fast, t_fast = fit_with_callbacks(registry, over, tmp_path / "a")
    listener = _Listener()
    slow, t_slow = fit_with_callbacks(registry, over, tmp_path / "b", [listener])
    assert fast._loop["direct"] and not slow._loop["direct"]
    assert listener.calls == {k: 12 for k in listener.calls}  # 6 iterations x (D step, G step)
    assert t_fast.global_step == t_slow.global_step == 12
    assert fast.counters() == slow.counters()
    a, b = fast.state_dict(), slow.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    for oa, ob in zip(t_fast.optimizers, t_slow.optimizers):
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    if "train.grad_clip=0.05" in extra:  # clipping ran on both paths (the norm is recorded when it clips)
        assert fast.last_grad_norm == slow.last_grad_norm and fast.last_grad_norm > 0.05


def test_direct_steps_are_refused_where_lightning_adds_to_backward_or_the_step(registry, tiny, tmp_path):
    from ganforge.loop.module import direct_steps

    module, trainer = fit_with_callbacks(registry, tiny + ["metrics.list=[]", "train.max_steps=1"], tmp_path)
    assert direct_steps(trainer, module)
    trainer.callbacks.append(_Listener())
    assert not direct_steps(trainer, module)  # a listener
    trainer.callbacks.pop()

    class Scaled(type(trainer.precision_plugin)):
        pass

    plain = trainer.precision_plugin
    trainer.strategy._precision_plugin = Scaled()  # an unknown precision plugin (fp16's scaler, DeepSpeed, ...)
    assert not direct_steps(trainer, module)
    trainer.strategy._precision_plugin = plain
    assert direct_steps(trainer, module)
