"""Physics constraints: decoding as the dataset does, by-hand formulas, and ctapipe's cleaning as the reference."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ganforge import DataInfo

from ganforge_astro.constraints import PixelDecoder, non_negative, size_energy, survives_cleaning
from ganforge_astro.physics import Cleaning
from ganforge_astro.toy import iact_toy


@pytest.fixture(scope="module")
def raw():
    """Uncleaned toy images (noise, negative pedestal values)."""
    return iact_toy(num_samples=240, seed=11, cleaning=False)


@pytest.fixture(scope="module")
def clean():
    return iact_toy(num_samples=240, seed=12)


def test_decoder_is_the_datasets_own_mapping_with_gradients(raw, clean):
    for ds in (raw, clean):
        dec = PixelDecoder(ds.camera)
        got = dec.pe(ds.x).double().numpy()
        np.testing.assert_allclose(got, ds.camera.decode(ds.x), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(got, ds.pe, rtol=1e-4, atol=1e-3)  # and back to the simulated pe
    x = clean.x[:4].clone().requires_grad_(True)
    PixelDecoder(clean.camera).pe(x).sum().backward()
    cells = (x.grad[:, 0] != 0).sum(dim=(1, 2))
    assert cells.tolist() == [clean.camera.n_pixels] * 4  # every camera pixel's cell, no empty cell


def _ctapipe_survives(ds, pe: np.ndarray, cleaning: Cleaning) -> np.ndarray:
    return np.array([cleaning.mask(ds.camera.geometry, img).sum() >= cleaning.min_pixels for img in pe])


def test_survives_cleaning_violations_are_ctapipes_failures(raw):
    rng = np.random.default_rng(0)
    dimmed = raw.pe * rng.uniform(0.005, 1.0, size=(len(raw.pe), 1))  # a mix of surviving and failing images
    x = torch.from_numpy(raw.camera.encode(dimmed))
    con = survives_cleaning(raw.info)
    assert con.cleaning == Cleaning() and con.exact  # no cleaning in this dataset: the metrics' defaults
    pen = con.penalty(x, raw.y)
    survives = _ctapipe_survives(raw, raw.camera.decode(x), con.cleaning)
    assert 0.1 < 1 - survives.mean() < 0.9
    np.testing.assert_array_equal(pen.numpy() > 0, ~survives)
    assert pen.min() >= 0 and pen.max() <= 1
    # the penalty by hand: relu(1 - c/P)^2, c = min(pe_i, 2nd brightest neighbour) at its largest
    pe = raw.camera.decode(x)
    nb = raw.camera.geometry.neighbors
    for i in range(5):
        c = max(min(pe[i, p], sorted(pe[i, nb[p]])[-2]) for p in range(len(nb)))
        assert pen[i].item() == pytest.approx(max(0.0, 1 - c / 6.0) ** 2, rel=1e-4, abs=1e-6)


def test_survives_cleaning_on_the_cleaned_dataset_and_its_gradient(clean):
    con = survives_cleaning(clean.info)
    assert con.cleaning.picture_pe == 6.0 and con.cleaning.min_pixels == 3  # from info.protocol["cleaning"]
    pen = con.penalty(clean.x, clean.y)
    survives = _ctapipe_survives(clean, clean.camera.decode(clean.x), con.cleaning)
    np.testing.assert_array_equal(pen.numpy() > 0, ~survives)
    # a blank image violates it, and the gradient raises a pixel and its neighbours
    blank = torch.full_like(clean.x[:2], -1.0).requires_grad_(True)
    p = con.penalty(blank, clean.y[:2])
    assert torch.allclose(p, torch.ones(2))
    p.sum().backward()
    assert (blank.grad < 0).sum().item() >= 2  # descending the penalty brightens pixels


def test_survives_cleaning_parameters_and_bad_values(raw):
    other = survives_cleaning(raw.info, picture_pe=10.0, boundary_pe=5.0, min_pixels=5)
    assert not other.exact and other.k == 3
    rng = np.random.default_rng(1)
    dimmed = raw.pe * rng.uniform(0.005, 1.0, size=(len(raw.pe), 1))
    x = torch.from_numpy(raw.camera.encode(dimmed))
    agree = ((other.penalty(x, raw.y).numpy() > 0) == ~_ctapipe_survives(raw, raw.camera.decode(x), other.cleaning))
    assert agree.mean() > 0.9  # an approximation off the defaults
    with pytest.raises(ValueError, match=r"survives-cleaning: cleaning: need 0 < boundary_pe <= picture_pe"):
        survives_cleaning(raw.info, picture_pe=3.0, boundary_pe=5.0)
    with pytest.raises(ValueError, match=r"min_picture_neighbors=7, but pixels .* at most 6 neighbours"):
        survives_cleaning(raw.info, min_picture_neighbors=7)
    points = DataInfo(sample_shape=(2,), name="gaussian-ring")
    with pytest.raises(ValueError, match=r"constraint survives-cleaning: dataset 'gaussian-ring' has no camera"):
        survives_cleaning(points)


def _soft_size(pe: np.ndarray) -> np.ndarray:
    return (pe / (1.0 + np.exp(-(pe - 3.0) / 0.5))).sum(axis=1)


def test_size_energy_calibration_and_penalty_by_hand(clean):
    con = size_energy(clean.info, tolerance=1.0)
    with pytest.raises(RuntimeError, match="not calibrated"):
        con.penalty(clean.x, clean.y)
    con.calibrate(clean.x, clean.y)
    pe = clean.camera.decode(clean.x)
    size = _soft_size(pe)
    # the soft size sits close to the cleaned size the metrics use (Hillas intensity)
    lit = pe.sum(axis=1) > 0  # (a few toy events leave nothing after cleaning)
    assert np.median(np.abs(size[lit] / pe[lit].sum(axis=1) - 1)) < 0.02
    y = clean.y.numpy().astype(float)
    conds = {c["name"]: c["column"] for c in clean.info.protocol["conditions"]}  # by name, as the constraint does
    e, g = y[:, conds["log10_energy"]], y[:, conds["particle"]]
    rel = con.state_dict()["relation"]
    assert rel["groups"] == [0, 1]
    for j, grp in enumerate((0, 1)):
        sel = (g == grp) & (size > 0)
        b, a = np.polyfit(e[sel], np.log10(size[sel] + 1), 1)
        resid = np.log10(size[sel] + 1) - (a + b * e[sel])
        assert rel["intercept"][j] == pytest.approx(a, abs=1e-4) and rel["slope"][j] == pytest.approx(b, abs=1e-4)
        assert rel["sigma"][j] == pytest.approx(np.std(resid, ddof=2), rel=1e-3)
        assert 0.5 < b < 1.2  # toy light ∝ E: slope near 1 in log-log
    # penalty = relu(|r|/σ − tol)²; the real images mostly satisfy it
    r = con.residual(clean.x, clean.y).numpy()
    pen = con.penalty(clean.x, clean.y).numpy()
    np.testing.assert_allclose(pen, np.maximum(np.abs(r) - 1.0, 0.0) ** 2, rtol=1e-5, atol=1e-7)
    assert 0.15 < (pen > 0).mean() < 0.45 and (pen[np.abs(r) <= 1.0] == 0).all()
    # an image 10x too bright for its energy is penalized, with a gradient that dims it
    x = torch.from_numpy(clean.camera.encode(pe[:3] * 10.0)).requires_grad_(True)
    p = con.penalty(x, clean.y[:3])
    assert (p > 0).all()
    p.sum().backward()
    assert x.grad.sum() > 0


def test_size_energy_hard_cut_and_one_sided_penalty(clean):
    pe = clean.camera.decode(clean.x)
    # soft_clean_width_pe: 0 is a hard cut: the size is the light of the pixels at or above the threshold, and
    # only those pixels get a gradient
    hard = size_energy(clean.info, soft_clean_pe=3.0, soft_clean_width_pe=0)
    hard.calibrate(clean.x, clean.y)
    assert "pe >= 3.0" in hard.state_dict()["relation"]["size"]
    torch.testing.assert_close(hard.size(clean.x).double(), torch.from_numpy((pe * (pe >= 3.0)).sum(axis=1)),
                               rtol=1e-4, atol=1e-3)
    glow = pe[:4].copy()
    glow[glow == 0] = 2.0  # a faint glow under the threshold everywhere the image is dark
    x = torch.from_numpy(clean.camera.encode(glow)).requires_grad_(True)
    hard.size(x).sum().backward()
    cells = hard.decoder.cells
    grad = x.grad.flatten(1)[:, cells].numpy()
    assert (grad[glow < 3.0] == 0).all() and (grad[glow >= 3.0] > 0).all()
    soft = size_energy(clean.info)  # the default soft step (0.5 pe) does reach those pixels
    x.grad = None
    soft.size(x).sum().backward()
    assert (x.grad.flatten(1)[:, cells].numpy()[glow < 3.0] > 0).all()
    # sides: which deviations from the relation are penalized
    both, above, below = (size_energy(clean.info, sides=s) for s in ("both", "above", "below"))
    both.calibrate(clean.x, clean.y)
    above.load_state_dict(both.state_dict())
    below.load_state_dict(both.state_dict())
    r = both.residual(clean.x, clean.y)
    assert (r > 1).any() and (r < -1).any()
    torch.testing.assert_close(above.penalty(clean.x, clean.y), torch.relu(r - 1.0) ** 2)
    torch.testing.assert_close(below.penalty(clean.x, clean.y), torch.relu(-r - 1.0) ** 2)
    torch.testing.assert_close(above.penalty(clean.x, clean.y) + below.penalty(clean.x, clean.y),
                               both.penalty(clean.x, clean.y))
    # gradient: uniform keeps the value and gives every lit pixel the same gradient, d log10 pe / dx of a bright
    # pixel (norm / 2 / ln 10 with the offset map), where the exact gradient grows with the pixel's brightness
    uniform = size_energy(clean.info, gradient="uniform")
    uniform.load_state_dict(both.state_dict())
    torch.testing.assert_close(uniform.residual(clean.x, clean.y), r)
    torch.testing.assert_close(uniform.penalty(clean.x, clean.y), both.penalty(clean.x, clean.y))
    grads = {}
    for name, con in (("exact", both), ("uniform", uniform)):
        x = clean.x[:8].clone().requires_grad_(True)
        con.log_size(x).sum().backward()
        grads[name] = x.grad.flatten(1)[:, both.decoder.cells].numpy()
    bright, empty = pe[:8] >= 20.0, pe[:8] == 0
    slope = both.decoder.norm / 2 / np.log(10.0)
    for i in range(8):
        if bright[i].sum() >= 2:
            g = grads["uniform"][i]
            np.testing.assert_allclose(g[bright[i]], g[bright[i]].mean(), rtol=1e-3)
            assert g[bright[i]].sum() <= slope + 1e-4 and np.abs(g[empty[i]]).max() < 1e-2 * g[bright[i]].max()
            ge = grads["exact"][i][bright[i]]
            order = np.argsort(pe[i][bright[i]])
            assert ge[order[-1]] > ge[order[0]]  # exact: the brightest pixel gets the largest gradient
    for bad, match in ((dict(sides="up"), r"sides='up'; expected one of \['both', 'above', 'below'\]"),
                       (dict(gradient="flat"), r"gradient='flat'; expected one of \['exact', 'uniform'\]"),
                       (dict(soft_clean_width_pe=-0.5), r"soft_clean_width_pe=-0.5; expected a finite number >= 0")):
        with pytest.raises(ValueError, match=match):
            size_energy(clean.info, **bad)


def test_size_energy_finds_columns_by_name_and_state_round_trip(clean):
    con = size_energy(clean.info)
    con.calibrate(clean.x, clean.y)
    # iact-toy's layout has the particle class in column 0, log10 E in 1; the swapped layout, described by name
    conds = [{"name": "log10_energy", "column": 0}, {"name": "particle", "column": 1}]
    info2 = dataclasses.replace(clean.info, protocol={**clean.info.protocol, "conditions": conds})
    y2 = clean.y[:, [1, 0]]
    fresh = size_energy(info2)
    fresh.load_state_dict(con.state_dict())
    torch.testing.assert_close(fresh.penalty(clean.x, y2), con.penalty(clean.x, clean.y))
    with pytest.raises(ValueError, match=r"state has no valid 'relation'"):
        fresh.load_state_dict({"relation": {"groups": [0]}})
    with pytest.raises(ValueError, match=r"particle type 3 was not in the training data"):
        bad = clean.y[:2].clone()
        bad[:, 0] = 3  # the particle column of iact-toy
        con.penalty(clean.x[:2], bad)
    no_energy = dataclasses.replace(clean.info, protocol={**clean.info.protocol, "conditions": conds[1:]})
    with pytest.raises(ValueError, match=r"size-energy: the dataset 'iact-toy' has no condition 'log10_energy'"):
        size_energy(no_energy)
    with pytest.raises(ValueError, match=r"tolerance=-1.0; expected a finite number >= 0"):
        size_energy(clean.info, tolerance=-1.0)
    with pytest.raises(ValueError, match=r"particle type 0 has 1 training images"):
        size_energy(clean.info).calibrate(clean.x[:1], clean.y[:1])


def test_non_negative_calibrated_and_by_hand(raw, clean):
    con = non_negative(raw.info)
    con.calibrate(raw.x, raw.y)
    assert con.min_pe == pytest.approx(float(raw.pe.min()), abs=1e-3) and con.min_pe < 0
    assert (con.penalty(raw.x, raw.y) == 0).all()  # the training images satisfy it
    x = raw.x[:2].clone()
    units = PixelDecoder(raw.camera).units(x)
    floor = float(raw.camera.amplitude.forward(np.array([con.min_pe]))[0])
    pixel = int(PixelDecoder(raw.camera).cells[7])
    x[0, 0].view(-1)[pixel] = floor - 0.25  # one camera pixel below the floor
    x[1, 0, 0, 0] = -1.0  # an empty corner cell (not a pixel): does not count
    pen = con.penalty(x, raw.y[:2])
    assert pen[0].item() == pytest.approx(0.25**2 / raw.camera.n_pixels, rel=1e-4)
    assert pen[1].item() == 0.0 and units.shape[1] == 559
    # cleaned images: the lowest is 0 pe, which a tanh output (> -1) can never go below
    cc = non_negative(clean.info)
    cc.calibrate(clean.x, clean.y)
    assert cc.min_pe == pytest.approx(0.0, abs=1e-6)
    assert (cc.penalty(torch.full_like(clean.x[:2], -0.999999), clean.y[:2]) == 0).all()
    # given, not calibrated; state round trip; bad values
    fixed = non_negative(raw.info, min_pe=-1.0)
    fixed.calibrate(raw.x, raw.y)
    assert fixed.min_pe == -1.0 and fixed.state_dict() == {"min_pe": -1.0}
    other = non_negative(raw.info)
    other.load_state_dict(con.state_dict())
    assert other.min_pe == con.min_pe
    with pytest.raises(RuntimeError, match="non-negative: not calibrated"):
        non_negative(raw.info).penalty(raw.x[:1], raw.y[:1])
    with pytest.raises(ValueError, match=r"min_pe=nan; expected a finite number"):
        non_negative(raw.info, min_pe=math.nan)
    with pytest.raises(ValueError, match=r"state needs a finite 'min_pe'"):
        other.load_state_dict({"min_pe": None})


def test_constraints_are_registered_under_the_plugin():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "ganforge", "plugins"], capture_output=True, text=True, env=env,
                         check=True, timeout=120).stdout
    section = out[out.index("astro  (ganforge-astro"):]
    section = section[: section.index("\n", section.index("constraint        survives-cleaning"))]
    for name in ("non-negative", "points-to-source", "size-energy", "survives-cleaning"):
        assert f"constraint        {name}" in section
    assert "tolerance: float (>= 0) = 1.0" in section and "min_pe: float | null" in section


def test_new_config_keys_good_and_bad_through_a_config():
    """The shipped constrained config (sides: above, gradient: uniform, coords: true, the turned generator and the
    canonical discriminator) loads; a bad value of each
    new key is one line naming the key, the value and what it may be."""
    config = Path(__file__).resolve().parents[1] / "configs" / "iact-cgan-constrained.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1"}

    def show(*overrides):
        return subprocess.run([sys.executable, "-m", "ganforge", "config", "show", "-c", str(config), *overrides],
                              capture_output=True, text=True, env=env, timeout=120)

    good = show()
    assert good.returncode == 0, good.stderr
    assert "sides: above" in good.stdout and "gradient: uniform" in good.stdout and "coords: true" in good.stdout
    assert "name: iact-rotated" in good.stdout and "angles: hexagonal" in good.stdout
    assert "name: iact-canonical" in good.stdout and good.stdout.count("mirror: true") == 2
    for override, message in (
            ("objective.constraints=[{name: size-energy, sides: up}]",
             "objective.constraints[0].sides: expected 'both' | 'above' | 'below', got 'up' (str)."),
            ("objective.constraints=[{name: size-energy, gradient: flat}]",
             "objective.constraints[0].gradient: expected 'exact' | 'uniform', got 'flat' (str)."),
            ("objective.constraints=[{name: size-energy, soft_clean_width_pe: -1}]",
             "objective.constraints[0].soft_clean_width_pe: must be >= 0, got -1."),
            ("objective.constraints=[{name: points-to-source, quantile: 1.5}]",
             "objective.constraints[0].quantile: must be in (0.0, 1.0), got 1.5."),
            ("objective.constraints=[{name: points-to-source, gradient: soft}]",
             "objective.constraints[0].gradient: expected 'exact' | 'redistribute', got 'soft' (str)."),
            ("generator.base_params.coords=maybe", "generator.base_params.coords: expected bool, got 'maybe' (str)."),
            ("generator.angles=square", "generator.angles: expected 'any' | 'hexagonal', got 'square' (str)."),
            ("discriminator.mirror=maybe", "discriminator.mirror: expected bool, got 'maybe' (str)."),
            ("generator.base=dcgam", None)):
        bad = show(override)
        if message is None:  # an unknown base generator: its name, the key and the closest registered name
            assert bad.returncode == 2 and "generator.base" in bad.stderr and "dcgan" in bad.stderr, bad.stderr
            continue
        assert bad.returncode == 2 and bad.stderr.strip() == f"ganforge: error: {message}", (override, bad.stderr)


# -- the plain-vs-constrained benchmark (benchmarks/constrained.py) -------------------------------

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "constrained.py"


def _bench(args, tmp_path, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANFORGE_STRICT_PLUGINS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARK), "--out", str(tmp_path / "out"), *args], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_benchmark_bad_arguments_are_one_line_each(tmp_path):
    for args, message in ((["--jobs", "0"], "--jobs 0: need at least 1"),
                          (["--seeds", "1", "1"], "--seeds [1, 1]: each seed once")):
        proc = _bench(args, tmp_path, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_benchmark_quick_trains_both_variants_and_reports(tmp_path):
    proc = _bench(["--quick", "--seeds", "0"], tmp_path)  # one seed: the seed loop is the same for more
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for line in ("mean ± sd over seeds [0]:", "size-energy rel_err constrained / plain:",
                 "acceptance ratio generated/real gammas:", "generation speed (1 thread"):
        assert line in out
    report = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in report["runs"]) == [("constrained", 0), ("plain", 0)]
    # the constrained runs really ran the constrained objective, calibrated on their training data
    cons = json.loads(next((tmp_path / "out" / "constrained-s0").glob("version_*/constraints.json")).read_text())
    assert set(cons["constraints"]) == {"size-energy", "non-negative"}
    assert report["speed"]["generator_images_per_s"] > 0 and report["speed"]["simulator_images_per_s"] > 0


def test_points_to_source_is_ctapipes_alpha_and_penalizes_only_its_particle():
    """sin(alpha) from the soft-cleaned moments against ctapipe's Hillas alpha on cleaned toy images; the
    calibrated allowance is the quantile of the real gammas'; protons and pointing gammas cost nothing."""
    from ganforge_astro.camera import camera_from_info
    from ganforge_astro.constraints import points_to_source
    from ganforge_astro.physics import PARAMETERS, image_parameters

    ds = iact_toy(num_samples=400, seed=13)
    x, y = ds.tensors()
    c = points_to_source(ds.info)
    cam = camera_from_info(ds.info, "test")
    pe = c.decoder.pe(x).numpy()
    rows = image_parameters(cam.geometry, pe, Cleaning(), 1.0)  # alpha is an angle: the focal length drops out
    ctapipe_alpha = rows[:, PARAMETERS.index("alpha")]
    mine = np.degrees(np.arcsin(c.sin_alpha(x).numpy()))
    gamma = (y[:, c.particle_col].round() == 0).numpy()
    ok = np.isfinite(ctapipe_alpha)
    diff = np.abs(ctapipe_alpha - mine)
    g = diff[ok & gamma]  # the soft tail cut weighs boundary pixels a little differently from the hard mask
    assert np.median(g) < 0.1 and np.quantile(g, 0.9) < 0.6, (np.median(g), np.quantile(g, 0.9))
    assert np.median(diff[ok]) < 0.25  # protons too, whose round images have a less defined axis
    assert np.median(mine[ok & gamma]) < 3 and np.median(mine[ok & ~gamma]) > 30  # gammas point, protons do not

    with pytest.raises(RuntimeError, match="not calibrated"):
        c.penalty(x, y)
    c.calibrate(x, y)
    s = c.sin_alpha(x).numpy()
    assert c.sin_alpha_max == pytest.approx(np.quantile(s[gamma], 0.9), rel=1e-5)
    f = x.clone().requires_grad_(True)
    pen = c.penalty(f, y)
    expect = np.where(gamma, np.maximum(s / c.sin_alpha_max - 1, 0) ** 2, 0.0)
    np.testing.assert_allclose(pen.detach().numpy(), expect, rtol=1e-4, atol=1e-6)
    assert (pen[torch.from_numpy(~gamma)] == 0).all() and (pen > 0).sum() > 0
    assert int((expect > 0).sum()) <= int(np.ceil(0.1 * gamma.sum()))  # at most the gammas beyond the quantile
    pen.sum().backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0

    state = json.loads(json.dumps(c.state_dict()))
    d = points_to_source(ds.info)
    d.load_state_dict(state)
    assert d.sin_alpha_max == c.sin_alpha_max
    for bad in ({}, {"sin_alpha_max": 0}, {"sin_alpha_max": "x"}, {"sin_alpha_max": float("nan")}):
        with pytest.raises(ValueError, match="points-to-source: state has no valid 'sin_alpha_max'"):
            d.load_state_dict(bad)
    for q in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"points-to-source: quantile={q}"):
            points_to_source(ds.info, quantile=q)
    only_protons = points_to_source(ds.info, particle=1)
    only_protons.calibrate(x, y)
    assert only_protons.sin_alpha_max > 0.5  # protons are randomly oriented


def test_points_to_source_redistribute_moves_light_without_dimming():
    """``gradient: redistribute``: the same penalty; each image's gradient sums to 0 over its lit pixels
    (a step turns the image instead of dimming it), where the exact gradient does not."""
    from ganforge_astro.constraints import points_to_source

    ds = iact_toy(num_samples=200, seed=14)
    x, y = ds.tensors()
    exact, redis = points_to_source(ds.info), points_to_source(ds.info, gradient="redistribute")
    exact.calibrate(x, y)
    redis.calibrate(x, y)
    assert redis.sin_alpha_max == exact.sin_alpha_max
    grads = []
    for c in (exact, redis):
        f = x.clone().requires_grad_(True)
        pen = c.penalty(f, y)
        pen.sum().backward()
        grads.append((pen.detach(), f.grad.flatten(1)[:, c.decoder.cells]))
    assert torch.equal(grads[0][0], grads[1][0])
    lit = (exact.decoder.pe(x) >= exact.soft_clean_pe).float()
    penalized = grads[0][0] > 0
    assert penalized.sum() > 0
    exact_sum, redis_sum = ((g * lit).sum(1) for _, g in grads)
    assert exact_sum[penalized].abs().max() > 1e-3
    assert redis_sum.abs().max() < 1e-5
    with pytest.raises(ValueError, match="points-to-source: gradient='uniform'; expected 'exact' or 'redistribute'"):
        points_to_source(ds.info, gradient="uniform")
