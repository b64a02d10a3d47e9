"""The gamma/hadron classifier of the ``acceptance`` metric: a small MLP on Hillas parameters.

The TAIGA-style check: an independent classifier, trained on simulated gammas vs protons, is asked
whether generated gamma images look like gammas. Ours is trained here on ``iact-toy`` images (seed
1000, disjoint from the run seeds the tests use) with scikit-learn's ``MLPClassifier``; its weights are
shipped as plain arrays (``weights/gamma_hadron.npz``, read with ``allow_pickle=False``) together with
its held-out accuracy and the training set-up, and the forward pass here is numpy (scikit-learn is
needed only to retrain)::

    python -m ganforge_astro.classifier --events 6000 --out ganforge_astro/weights/gamma_hadron.npz

Features (:data:`FEATURES`): Hillas parameters after cleaning plus the log10 energy the image belongs
to (the classifier knows the energy, as an analysis with reconstructed energy would).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ganforge_astro.physics import PARAMETERS

FEATURES = ("log10_size", "length", "width", "r", "skewness", "kurtosis", "alpha", "log10_energy")
WEIGHTS = "gamma_hadron.npz"


def features(rows: np.ndarray) -> np.ndarray:
    """Classifier inputs from rows ``[PARAMETERS..., log10_energy, particle]`` (NaN rows stay NaN)."""
    cols = [PARAMETERS.index(f) if f in PARAMETERS else len(PARAMETERS) for f in FEATURES]
    return np.asarray(rows, dtype=np.float64)[:, cols]


class GammaHadronClassifier:
    """``p(gamma | features)`` of an MLP with ReLU hidden layers, from plain arrays."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray],
                 meta: dict[str, Any]) -> None:
        self.mean, self.std, self.weights, self.biases, self.meta = mean, std, weights, biases, meta

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "GammaHadronClassifier":
        from ganforge import sha256_file

        p = Path(path) if path else Path(str(resources.files("ganforge_astro") / "weights" / WEIGHTS))
        if not p.is_file():
            raise FileNotFoundError(f"acceptance: classifier weights {p} not found; retrain them with "
                                    f"`python -m ganforge_astro.classifier --out {p}`")
        with np.load(p, allow_pickle=False) as f:
            n = int(f["n_layers"])
            meta = json.loads(str(f["meta"]))
            if tuple(meta["features"]) != FEATURES:
                raise ValueError(f"acceptance: {p} was trained on features {meta['features']}, this version "
                                 f"uses {list(FEATURES)}; retrain with `python -m ganforge_astro.classifier`")
            clf = cls(f["mean"], f["std"], [f[f"w{i}"] for i in range(n)], [f[f"b{i}"] for i in range(n)], meta)
        clf.meta["weights_sha256"] = sha256_file(p)
        return clf

    def gamma_probability(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` probabilities; NaN for rows with NaN features (images that did not survive cleaning)."""
        x = np.asarray(x, dtype=np.float64)
        ok = np.all(np.isfinite(x), axis=1)
        h = (x[ok] - self.mean) / self.std
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        out = np.full(len(x), np.nan)
        out[ok] = 1.0 / (1.0 + np.exp(h[:, 0]))  # the MLP's logit is for class 1 = proton
        return out


def train(events: int, seed: int, out: Path) -> dict[str, Any]:
    """Train on toy gammas vs protons, hold out 30 %, write the weights and meta data to ``out``."""
    from sklearn.neural_network import MLPClassifier

    from ganforge_astro.physics import Cleaning, hillas_rows_with_conditions
    from ganforge_astro.toy import iact_toy

    ds = iact_toy(num_samples=events, seed=seed)
    rows = hillas_rows_with_conditions(ds.camera, ds.pe, ds.y.numpy(), Cleaning())
    x, label = features(rows), rows[:, -1].astype(int)
    ok = np.all(np.isfinite(x), axis=1)
    x, label = x[ok], label[ok]
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.7 * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-12
    mlp = MLPClassifier(hidden_layer_sizes=(32, 32), max_iter=2000, random_state=seed)
    mlp.fit((x[tr] - mean) / std, label[tr])
    clf = GammaHadronClassifier(mean, std, list(mlp.coefs_), list(mlp.intercepts_), {})
    p_gamma = clf.gamma_probability(x[te])
    acc = float(np.mean((p_gamma < 0.5).astype(int) == label[te]))
    meta = {"features": list(FEATURES), "accuracy_held_out": acc, "held_out": int(len(te)), "trained_on": int(n_train),
            "data": {"dataset": "iact-toy", **{k: v for k, v in ds.info.protocol.items() if k in ("seed", "spectral_index",
                     "energy_range_tev", "gamma_fraction", "cleaning")}, "events": events},
            "model": "sklearn MLPClassifier(hidden_layer_sizes=(32, 32), relu), inputs standardized",
            "gamma_acceptance_held_out": float(np.mean(p_gamma[label[te] == 0] >= 0.5)),
            "proton_acceptance_held_out": float(np.mean(p_gamma[label[te] == 1] >= 0.5))}
    arrays = {"mean": mean, "std": std, "n_layers": np.int64(len(mlp.coefs_)), "meta": np.array(json.dumps(meta))}
    arrays.update({f"w{i}": w for i, w in enumerate(mlp.coefs_)})
    arrays.update({f"b{i}": b for i, b in enumerate(mlp.intercepts_)})
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description="train the acceptance metric's gamma/hadron classifier on iact-toy")
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / WEIGHTS)
    args = ap.parse_args()
    print(json.dumps(train(args.events, args.seed, args.out), indent=1))


if __name__ == "__main__":
    main()
