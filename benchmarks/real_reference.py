"""Reference values of the metrics on REAL data: what a perfect generator would score.

FID/KID/PRDC of two disjoint halves of the digits (real vs real) against digits vs uniform
noise; Inception-style score of real digits with digits-cnn; class coverage of real stacked
digits. Compare trained models with these, not with zero.

    .venv/bin/python benchmarks/real_reference.py
"""

from __future__ import annotations

import torch

from ganforge.registry.registry import get_registry


def feed(metric, real, fake, protocol):
    metric.prepare_real(lambda: [(real, None)], protocol)
    metric.reset()
    for i in range(0, len(fake), 500):
        metric.update(fake[i : i + 500])
    return metric.compute()


def main() -> None:
    reg = get_registry()
    ds = reg.build("dataset", {"name": "digits", "resolution": 16, "labels": True}, seed=0)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    a, b = x[perm[: len(x) // 2]], x[perm[len(x) // 2 :]]
    noise = torch.rand(b.shape, generator=g) * 2 - 1
    print(f"digits 16x16: {len(a)} real vs {len(b)} real (disjoint halves), and vs {len(b)} uniform-noise images")
    print(f"{'metric':<34}{'real vs real':>14}{'real vs noise':>15}")
    for name, params in [("fid", {}), ("kid", {"subsets": 50, "subset_size": 500}), ("prdc", {"nearest_k": 5})]:
        for fx in ("digits-cnn", "identity"):
            vals = []
            for fake in (b, noise):
                m = reg.build("metric", {"name": name, "feature_extractor": fx, "num_samples": len(fake),
                                         **({"num_real": len(a)} if name != "kid" else {}), **params},
                              info=ds.info)
                vals.append(feed(m, a, fake, {"split": f"half-a-{fx}-{name}", **ds.info.protocol}))
            for k in vals[0]:
                print(f"{name + '/' + k + ' (' + fx + ')':<34}{vals[0][k]:>14.4f}{vals[1][k]:>15.4f}")
    m = reg.build("metric", {"name": "inception-score", "feature_extractor": "digits-cnn", "num_samples": len(x)},
                  info=ds.info)
    r = feed(m, x, x, {"split": "all"})
    print(f"{'digits IS (digits-cnn), real':<34}{r['is_mean']:>14.4f}  (max 10 for 10 equiprobable classes)")
    cc = reg.build("metric", {"name": "class-coverage", "per_channel": False, "num_samples": len(x)}, info=ds.info)
    cc.reset()
    labels = torch.tensor([ds[i][1] for i in range(len(ds))])
    cc.update(x, labels)
    r = cc.compute()
    print(f"{'class accuracy of real digits':<34}{r['class_accuracy']:>14.4f}  (digits-cnn on all 1,797, train split included)")
    st = reg.build("dataset", {"name": "stacked-digits", "num_samples": 26000, "labels": False}, seed=0)
    xs = torch.stack([st[i] if not isinstance(st[i], tuple) else st[i][0] for i in range(len(st))])
    cc = reg.build("metric", {"name": "class-coverage", "per_channel": True, "num_samples": len(xs)}, info=st.info)
    cc.reset()
    for i in range(0, len(xs), 2000):
        cc.update(xs[i : i + 2000])
    r = cc.compute()
    print(f"{'stacked digits, real (26,000)':<34} modes {r['modes']:.0f} / 1000, KL to uniform {r['kl_uniform']:.4f}")


if __name__ == "__main__":
    main()
