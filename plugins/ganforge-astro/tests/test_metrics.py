"""Metrics hillas and size-energy (ganforge-astro): values against scipy, the floor, distributed-style merging."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ganforge import DataInfo, NotApplicable
from scipy.stats import ks_2samp, wasserstein_distance

from ganforge_astro.metrics import E_COL, N_PAR, P_COL, hillas, size_energy
from ganforge_astro.physics import PARAMETERS, energy_edges, split_halves, survived
from ganforge_astro.toy import iact_toy


@pytest.fixture(scope="module")
def real():
    return iact_toy(num_samples=240, seed=11)


@pytest.fixture(scope="module")
def fake():
    return iact_toy(num_samples=120, seed=12, light_pe_per_tev=75.0)  # 4x dimmer: a visibly wrong "generator"


def _ready(metric, real):
    metric.set_real({k: v for k, v in metric.real_batch(real.x, real.y).items()})
    return metric


def test_hillas_matches_scipy_and_floor(real, fake):
    m = _ready(hillas(real.info, num_samples=120, num_real=None, energy_bins=2), real)
    m.update(fake.x[:50], fake.y[:50])
    m.update(fake.x[50:], fake.y[50:])
    out = m.compute()
    rows = m.real_rows
    a, b = split_halves(len(rows), 0)
    ra, rb = rows[a], rows[b]
    gen = m.rows if isinstance(m.rows, torch.Tensor) else torch.cat(m.rows)
    gen = gen.double().numpy()
    edges = energy_edges(rows[:, E_COL], 2)
    for j, p in enumerate(PARAMETERS):
        ga, gg, gb = ra[survived(ra[:, :N_PAR]), j], gen[survived(gen[:, :N_PAR]), j], rb[survived(rb[:, :N_PAR]), j]
        assert out[f"w1/{p}"] == pytest.approx(wasserstein_distance(ga, gg), rel=1e-12)
        assert out[f"ks/{p}"] == pytest.approx(ks_2samp(ga, gg).statistic, rel=1e-12)
        assert out[f"floor/w1/{p}"] == pytest.approx(wasserstein_distance(ga, gb), rel=1e-12)
    # per energy bin: the upper bin by hand
    ok_a, ok_g = survived(ra[:, :N_PAR]), survived(gen[:, :N_PAR])
    up_a = ra[ok_a & (ra[:, E_COL] >= edges[1]), 1]
    up_g = gen[ok_g & (gen[:, E_COL] >= edges[1]), 1]
    assert out["w1/length/e1"] == pytest.approx(wasserstein_distance(up_a, up_g), rel=1e-12)
    # the dimmer fake is clearly farther than real-vs-real in size
    assert out["w1/log10_size"] > 2 * out["floor/w1/log10_size"]
    assert 0 < out["survived"] <= 1 and out["w1_over_floor"] > 1


def test_generated_equal_to_real_half_scores_the_floor(real):
    """A 'generator' that returns exactly the real half B scores exactly the floor."""
    m = _ready(hillas(real.info, num_samples=120, num_real=None), real)
    _, b = split_halves(len(real), 0)
    m.update(real.x[b], real.y[b])
    out = m.compute()
    for p in PARAMETERS:
        assert out[f"w1/{p}"] == out[f"floor/w1/{p}"]
        assert out[f"ks/{p}"] == out[f"floor/ks/{p}"]
    assert out["w1_over_floor"] == pytest.approx(1.0)
    s = _ready(size_energy(real.info, num_samples=120, num_real=None), real)
    s.update(real.x[b], real.y[b])
    so = s.compute()
    assert so["rel_err"] == so["floor/rel_err"]


def test_size_energy_against_numpy_medians(real, fake):
    m = _ready(size_energy(real.info, num_samples=120, num_real=None, energy_bins=2), real)
    m.update(fake.x, fake.y)
    out = m.compute()
    rows = m.real_rows
    a, _ = split_halves(len(rows), 0)
    ra = rows[a]
    gen = torch.cat(m.rows).numpy() if isinstance(m.rows, list) else m.rows.numpy()
    edges = energy_edges(rows[:, E_COL], 2)

    def median(r, particle, k):
        ok = survived(r[:, :N_PAR]) & (r[:, P_COL] == particle)
        inside = (r[:, E_COL] >= edges[k]) & (r[:, E_COL] < edges[k + 1])
        return np.median(10 ** r[ok & inside, 0])

    expected = abs(median(gen, 0, 0) / median(ra, 0, 0) - 1)
    assert out["rel_err/gamma/e0"] == pytest.approx(expected, rel=1e-12)
    assert out["rel_err"] == pytest.approx(np.mean([out[k] for k in out if k.startswith("rel_err/")]), rel=1e-12)
    assert out["rel_err"] > out["floor/rel_err"]  # a quarter of the light: sizes far too small


def test_metric_refuses_data_without_a_camera():
    with pytest.raises(NotApplicable, match="not an IACT dataset"):
        hillas(DataInfo(sample_shape=(1, 8, 8), kind="image", name="digits"))
    with pytest.raises(ValueError, match="energy_bins=0; expected an integer >= 1"):
        hillas(iact_toy(num_samples=4, seed=0).info, energy_bins=0)
    info = iact_toy(num_samples=4, seed=0).info  # the columns are found by name in info.protocol["conditions"]
    no_particle = dataclasses.replace(info, protocol={**info.protocol, "conditions": info.protocol["conditions"][1:]})
    with pytest.raises(NotApplicable, match=r"needs the conditions log10_energy and particle .* has \['log10_energy'\]"):
        hillas(no_particle)
    with pytest.raises(ValueError, match="parameters has \\['size'\\]"):
        hillas(iact_toy(num_samples=4, seed=0).info, parameters=("size",))


def test_generated_images_need_conditions(real):
    m = _ready(hillas(real.info, num_samples=10, num_real=None), real)
    with pytest.raises(ValueError, match="without conditions"):
        m.update(real.x[:2], None)


def test_metric_rebuilds_the_camera_from_plain_info(real):
    """What a checkpoint keeps (info as JSON-able data) is enough for the metric: the camera is in the protocol."""
    import json

    d = json.loads(json.dumps(real.info.to_dict()))
    info = DataInfo(**{**d, "sample_shape": tuple(d["sample_shape"]), "value_range": tuple(d["value_range"])})
    m = hillas(info, num_samples=10, num_real=None)
    assert m.camera.n_pixels == 559 and m.camera.side == 32
    np.testing.assert_array_equal(m.camera.decode(real.x[:3]), real.camera.decode(real.x[:3]))


def test_classifier_forward_matches_sklearn():
    from sklearn.neural_network import MLPClassifier

    from ganforge_astro.classifier import GammaHadronClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    label = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    mlp = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=500, random_state=0).fit(x, label)
    clf = GammaHadronClassifier(np.zeros(8), np.ones(8), list(mlp.coefs_), list(mlp.intercepts_), {})
    np.testing.assert_allclose(clf.gamma_probability(x), mlp.predict_proba(x)[:, 0], rtol=1e-10, atol=1e-12)
    x[3, 2] = np.nan
    assert np.isnan(clf.gamma_probability(x)[3])


def test_shipped_classifier_separates_toy_gammas_from_protons():
    from ganforge_astro.classifier import FEATURES, GammaHadronClassifier

    clf = GammaHadronClassifier.load()
    assert tuple(clf.meta["features"]) == FEATURES
    assert clf.meta["accuracy_held_out"] > 0.9 and len(clf.meta["weights_sha256"]) == 64


def test_acceptance_floor_and_protons_disguised_as_gammas(real):
    from ganforge_astro.metrics import acceptance

    m = _ready(acceptance(real.info, num_samples=120, num_real=None), real)
    _, b = split_halves(len(real), 0)
    m.update(real.x[b], real.y[b])
    out = m.compute()
    assert out["ratio"] == out["floor/ratio"] and 0.5 < out["real"] <= 1.0
    # proton images presented as gammas: the classifier rejects most of them
    m.reset()
    protons = (real.y[:, 0] == 1).nonzero().flatten()  # column 0: the particle class
    y = real.y[protons].clone()
    y[:, 0] = 0
    m.update(real.x[protons], y)
    out = m.compute()
    assert out["generated"] < 0.5 * out["real"] and out["generated_gammas"] == len(protons)
