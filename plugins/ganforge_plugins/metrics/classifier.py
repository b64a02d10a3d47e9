"""Metrics that read generated images through a classifier or a feature space:
mode coverage by class (Stacked MNIST style) and nearest training neighbours (memorization check).

``class-coverage`` follows the Stacked-MNIST protocol of VEEGAN (Srivastava et al. 2017) and
PacGAN (Lin et al. 2018): a pretrained digit classifier labels each colour channel, the three
digits form one of 1000 modes, a mode is covered when at least one sample falls into it, and the
mode histogram is compared with the uniform one by ``KL(p_gen ‖ uniform)`` (PacGAN's
``model.py`` computes ``KLD(p, q)`` with ``p`` the generated histogram and ``q`` uniform; natural
log). Both use 26,000 generated samples (VEEGAN setting; the Unrolled-GAN setting uses 25,600).

``nearest-neighbours`` is the lecture's check "does the generator copy the training set?": each
generated sample's k nearest training images in feature space, their distances, and the ratio of
the generated-to-real nearest distance to the typical real-to-real one.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from ganforge import ComponentRef, DataInfo, Range, hookimpl
from ganforge_plugins.metrics.features import FeatureMetric, build_extractor, describe_preprocessing

__all__ = ["ClassCoverage", "NearestNeighbours", "kl_to_uniform", "image_grid"]


#: ``confidence`` of class-coverage: a top softmax probability, strictly between 0 and 1 (the config's check and the class's).
CONFIDENCE = Range(0.0, 1.0, low_open=True, high_open=True)


def kl_to_uniform(counts: Tensor) -> float:
    """``KL(p ‖ u) = Σ_i p_i log(p_i · M)`` for the histogram ``counts`` over M modes (nats;
    empty modes contribute 0·log 0 = 0). 0 for a uniform histogram, log M for a single mode."""
    counts = counts.double()
    total = counts.sum()
    if total <= 0:
        raise ValueError("empty histogram")
    p = counts / total
    nz = p > 0
    return float((p[nz] * (p[nz] * counts.numel()).log()).sum())


class ClassCoverage(FeatureMetric):
    """Modes covered and KL to uniform of a classifier's labels of generated samples.

    Args:
        classifier: A built feature extractor with ``classify(x) -> logits`` (and ideally
            ``num_classes``).
        per_channel: Classify each channel separately and combine the labels in base
            ``num_classes`` (``d0·100 + d1·10 + d2`` for stacked digits: 1000 modes); otherwise
            classify the whole sample.
        num_samples: Generated samples (26,000 in the VEEGAN/PacGAN protocol).
        confidence: A classified image (a channel, with ``per_channel``) counts as *uncertain*
            when the classifier's top softmax probability is below this (default 0.9).

    Besides ``modes`` and ``kl_uniform``: ``uncertain``, the fraction of classified images the
    classifier was unsure of (real stacked digits: under 1 %; an unsure image still gets a label,
    and the labels of unsure images pile up in a few classes, which inflates the KL without any
    mode being lost). With more than one channel the KL splits exactly into
    ``kl_channels = Σ_c KL(p_c ‖ uniform)``, the classes' uneven shares within each channel, and
    ``kl_dependence = KL(p ‖ Π_c p_c)``, digits of different channels that are not independent
    (``kl_uniform = kl_channels + kl_dependence``): what the KL is made of, not only how large.

    Conditional samples: when ``update`` gets integer labels ``y``, ``class_accuracy`` is the
    fraction whose (combined) predicted mode equals ``y``.
    """

    units = {"modes": "classes", "kl_uniform": "nats", "kl_channels": "nats", "kl_dependence": "nats",
             "uncertain": "fraction", "class_accuracy": "fraction"}

    metric_name = "class-coverage"
    needs_real = False

    def __init__(self, classifier: Any, *, per_channel: bool = True, confidence: float = 0.9,
                 **kwargs: Any) -> None:
        kwargs.setdefault("num_samples", 26_000)
        super().__init__(classifier, **kwargs)
        if not callable(getattr(classifier, "classify", None)):
            raise ValueError(
                f"class-coverage needs a classifier, but feature extractor '{classifier.name}' has no "
                "classify() method; use 'digits-cnn' or another extractor that classifies"
            )
        info = self.info
        image = info is not None and info.kind == "image" and len(info.sample_shape) == 3
        self.per_channel = bool(per_channel)
        self.channels = int(info.sample_shape[0]) if (self.per_channel and image) else 1
        self.num_classes = self._infer_classes()
        self.num_modes = self.num_classes**self.channels
        if self.num_modes > 10_000_000:
            raise ValueError(f"class-coverage: {self.num_classes}^{self.channels} modes is too many to count")
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not CONFIDENCE(confidence):
            raise ValueError(f"class-coverage: confidence={confidence!r} must be a number {CONFIDENCE.text} (e.g. 0.9: "
                             "an image whose top class has a lower softmax probability is uncertain)")
        self.confidence = float(confidence)
        self.add_state("counts", torch.zeros(self.num_modes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("channel_counts", torch.zeros(self.channels, self.num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("uncertain", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("labelled", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _infer_classes(self) -> int:
        c = getattr(self.extractor, "num_classes", None)
        if c:
            return int(c)
        info = self.info
        if info is None or len(info.sample_shape) == 0:
            raise ValueError(
                f"class-coverage: classifier '{self.extractor.name}' does not declare num_classes and "
                "the sample shape is unknown"
            )
        shape = ((1, *info.sample_shape[1:]) if self.channels > 1 else tuple(info.sample_shape))
        with torch.no_grad():
            return int(self.extractor.classify(torch.zeros((1, *shape))).shape[1])

    def _labels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per image to classify (each channel with ``per_channel``): labels ``(N, channels)`` and
        whether the classifier was unsure, ``(N, channels)`` bool."""
        parts = [x] if self.channels == 1 else [x[:, ch : ch + 1] for ch in range(self.channels)]
        labels, unsure = [], []
        for part in parts:
            logits = self._extract(part, "generated", method="classify").double()
            top, label = logits.softmax(1).max(1)
            labels.append(label.to(self.counts.device))
            unsure.append((top < self.confidence).to(self.counts.device))
        return torch.stack(labels, 1), torch.stack(unsure, 1)

    @staticmethod
    def _combine(labels: Tensor, num_classes: int) -> Tensor:
        modes = torch.zeros(labels.shape[0], dtype=torch.long, device=labels.device)
        for ch in range(labels.shape[1]):
            modes = modes * num_classes + labels[:, ch]
        return modes

    def predict_modes(self, x: Tensor) -> Tensor:
        """Mode index of each sample: per-channel labels combined most significant first."""
        return self._combine(self._labels(x)[0], self.num_classes)

    def update(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        labels, unsure = self._labels(x)
        modes = self._combine(labels, self.num_classes)
        self.counts += torch.bincount(modes, minlength=self.num_modes)
        for ch in range(self.channels):
            self.channel_counts[ch] += torch.bincount(labels[:, ch], minlength=self.num_classes)
        self.uncertain += unsure.sum()
        if y is not None and not torch.is_floating_point(y) and y.ndim == 1:
            self.correct += (modes == y.to(modes.device)).sum()
            self.labelled += y.shape[0]

    def compute(self) -> dict[str, float]:
        counts = self.counts
        if int(counts.sum()) == 0:
            raise ValueError("class-coverage: no generated samples")
        out = {"modes": float((counts > 0).sum()), "kl_uniform": kl_to_uniform(counts)}
        if self.channels > 1:
            out["kl_channels"] = sum(kl_to_uniform(c) for c in self.channel_counts)
            out["kl_dependence"] = max(0.0, out["kl_uniform"] - out["kl_channels"])  # ≥ 0; rounding only
        out["uncertain"] = float(self.uncertain) / float(self.channel_counts.sum())
        if int(self.labelled) > 0:
            out["class_accuracy"] = float(self.correct) / float(self.labelled)
        return out

    def protocol(self) -> dict[str, Any]:
        ex = self.extractor
        return {
            "metric": self.metric_name,
            "classifier": ex.name,
            "weights_sha256": ex.weights_sha256,
            "preprocessing": describe_preprocessing(ex),
            "num_classes": self.num_classes,
            "per_channel": self.per_channel,
            "channels": self.channels,
            "num_modes": self.num_modes,
            "num_samples": self.num_samples,
            "mode_covered": ">= 1 sample",
            "kl": "KL(p_gen || uniform), natural log (PacGAN/VEEGAN)",
            "kl_split": "kl_uniform = kl_channels (sum over channels of KL(p_c || uniform)) + kl_dependence",
            "uncertain": f"top softmax probability < {self.confidence} (per classified image)",
            "dtype": "float64",
        }


# -- nearest neighbours ------------------------------------------------------------------------------


def _to_uint8(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    lo, hi = value_range
    return ((x.float() - lo) / (hi - lo) * 255).round().clamp(0, 255).to(torch.uint8)


def image_grid(rows: list[list[np.ndarray]], pad: int = 2, gap: int = 4) -> np.ndarray:
    """Tile ``(C, H, W)`` uint8 images into one ``(H', W', C)`` uint8 array, white borders, with a
    wider gap after the first column (the generated sample) so it reads apart from its neighbours."""
    c, h, w = rows[0][0].shape
    ncol = max(len(r) for r in rows)
    width = pad + ncol * (w + pad) + (gap if ncol > 1 else 0)
    height = pad + len(rows) * (h + pad)
    out = np.full((height, width, c), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        top = pad + i * (h + pad)
        for j, img in enumerate(row):
            left = pad + j * (w + pad) + (gap if j > 0 else 0)
            out[top : top + h, left : left + w] = img.transpose(1, 2, 0)
    return out


class NearestNeighbours(FeatureMetric):
    """The k nearest training images of a few generated samples, in feature space.

    ``compute()`` returns ``nn_dist_mean`` / ``nn_dist_min`` (generated sample to its nearest
    training image), ``real_nn_dist_mean`` (training image to its nearest other training image)
    and ``nn_ratio = nn_dist_mean / real_nn_dist_mean``: near 1 or above for a generator that
    produces new samples, ≪ 1 when it reproduces training images. After ``compute()``,
    :meth:`figure` returns the grid (each row: a generated sample, then its k neighbours) and
    :meth:`distances` the ``(num_samples, k)`` distances.

    Real images are kept as uint8 (at most ``num_real``), with their features (the engine's real pass caches both).
    """

    metric_name = "nearest-neighbours"
    needs_real = True

    def __init__(self, extractor: Any, *, k: int = 5, **kwargs: Any) -> None:
        kwargs.setdefault("num_samples", 16)
        kwargs.setdefault("num_real", 10_000)
        super().__init__(extractor, **kwargs)
        if k < 1:
            raise ValueError(f"nearest-neighbours: k must be >= 1, got {k}")
        self.k = int(k)
        self.add_state("gen_features", [], dist_reduce_fx="cat")
        self.add_state("gen_images", [], dist_reduce_fx="cat")
        self.real_features: Optional[Tensor] = None
        self.real_images: Optional[Tensor] = None
        self.real_nn: Optional[Tensor] = None
        self._local_seen = 0
        self._result: Optional[tuple[Tensor, Tensor, Tensor]] = None

    @property
    def _value_range(self) -> tuple[float, float]:
        return tuple(self.info.value_range) if self.info is not None else (-1.0, 1.0)  # type: ignore[return-value]

    real_reduce = {"features": "cat", "images": "cat"}

    def real_key(self) -> dict[str, Any]:
        return {**super().real_key(), "images": "uint8", "value_range": list(self._value_range)}

    def real_batch(self, x: Tensor, y: Optional[Tensor] = None) -> dict[str, Tensor]:
        return {"features": self._extract(x, "real").double(), "images": _to_uint8(x, self._value_range)}

    def set_real(self, stats: dict[str, Any]) -> None:
        f = stats["features"]
        if f.shape[0] < 2:
            raise ValueError(f"nearest-neighbours: got {f.shape[0]} real samples; need at least 2")
        self.real_features, self.real_images, self.real_nn = f, stats["images"], _nearest_other(f)
        self.real_count = int(f.shape[0])
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._local_seen = 0
        self._result = None

    def update(self, x: Tensor, y: Optional[Tensor] = None) -> None:
        # only the first num_samples per rank are kept: the figure shows a handful of rows
        take = max(0, self.num_samples - self._local_seen)
        x = x[:take]
        if x.shape[0] == 0:
            return
        self._local_seen += x.shape[0]
        self.gen_features.append(self._extract(x, "generated").double())
        self.gen_images.append(_to_uint8(x, self._value_range))

    def compute(self) -> dict[str, float]:
        if self.real_features is None or self.real_nn is None:
            raise RuntimeError("nearest-neighbours: real data missing: call prepare_real() before compute()")
        gen = dim_zero_cat(self.gen_features)[: self.num_samples].double().cpu()
        imgs = dim_zero_cat(self.gen_images)[: self.num_samples].cpu()
        k = min(self.k, self.real_features.shape[0])
        # the exact difference formula: near-copies must give ~0, not matmul rounding noise
        d = torch.cdist(gen, self.real_features.double(), compute_mode="donot_use_mm_for_euclid_dist")
        dist, idx = d.topk(k, dim=1, largest=False)
        self._result = (imgs, idx, dist)
        real_mean = float(self.real_nn.mean())
        nn_mean = float(dist[:, 0].mean())
        return {
            "nn_dist_mean": nn_mean,
            "nn_dist_min": float(dist[:, 0].min()),
            "real_nn_dist_mean": real_mean,
            "nn_ratio": nn_mean / real_mean if real_mean > 0 else float("inf"),
        }

    def _need_result(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._result is None:
            raise RuntimeError("nearest-neighbours: call compute() (on every rank) before figure()/distances()")
        return self._result

    def distances(self) -> np.ndarray:
        """``(num_samples, k)`` feature distances to the nearest training images, ascending."""
        return self._need_result()[2].numpy().copy()

    def indices(self) -> np.ndarray:
        """``(num_samples, k)`` indices of the nearest training images in the kept real set."""
        return self._need_result()[1].numpy().copy()

    def figure(self) -> np.ndarray:
        """uint8 ``(H, W, C)`` grid: one row per generated sample, its k nearest training images after it."""
        imgs, idx, _ = self._need_result()
        if imgs.ndim != 4 or self.real_images is None or self.real_images.ndim != 4:
            raise ValueError("nearest-neighbours: figure() needs image samples (N, C, H, W)")
        real = self.real_images
        if imgs.shape[1] not in (1, 3):  # e.g. 2-channel detector images: show the channel mean
            imgs = imgs.float().mean(1, keepdim=True).round().to(torch.uint8)
            real = real.float().mean(1, keepdim=True).round().to(torch.uint8)
        rows = [[imgs[i].numpy()] + [real[j].numpy() for j in idx[i].tolist()] for i in range(imgs.shape[0])]
        return image_grid(rows)

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "k": self.k, "distance": "euclidean in feature space"}


def _nearest_other(f: Tensor) -> Tensor:
    """Distance of each row to its nearest other row, in blocks. The matmul form of cdist is used:
    this is only a typical scale, and the exact form costs far more for N² pairs."""
    f = f.double()
    out = []
    step = max(1, (1 << 22) // max(f.shape[0], 1))
    for i in range(0, f.shape[0], step):
        d = torch.cdist(f[i : i + step], f)
        out.append(d.topk(2, dim=1, largest=False).values[:, 1])  # the row's own zero is one of the two
    return torch.cat(out)


# -- factories ---------------------------------------------------------------------------------------


def class_coverage(
    info: DataInfo,
    classifier: Annotated[str, ComponentRef("feature_extractor")] = "digits-cnn",
    num_samples: int = 26_000,
    per_channel: bool = True,
    batch_size: int = 256,
    confidence: Annotated[float, CONFIDENCE] = 0.9,
) -> ClassCoverage:
    """Modes covered and KL(p_gen ‖ uniform) by a classifier, per channel for Stacked MNIST (1000 modes).

    Args:
        classifier: A feature extractor that classifies (``digits-cnn``).
        num_samples: Generated samples (26,000: the VEEGAN/PacGAN protocol).
        per_channel: Classify each channel and combine the labels (stacked digits: 1,000 modes).
        batch_size: Samples per classifier call.
        confidence: Below this top softmax probability an image counts as uncertain.
    """
    ex = build_extractor(classifier, info, "class-coverage")
    return ClassCoverage(ex, info=info, num_samples=num_samples, per_channel=per_channel, batch_size=batch_size,
                         confidence=confidence)


def nearest_neighbours(
    info: DataInfo,
    feature_extractor: Annotated[str, ComponentRef("feature_extractor")] = "digits-cnn",
    num_samples: int = 16,
    k: int = 5,
    num_real: Optional[int] = 10_000,
    batch_size: int = 256,
) -> NearestNeighbours:
    """Nearest training images of generated samples in feature space: distances, ratio, image grid."""
    ex = build_extractor(feature_extractor, info, "nearest-neighbours")
    return NearestNeighbours(ex, info=info, num_samples=num_samples, k=k, num_real=num_real, batch_size=batch_size)


GANFORGE_PLUGIN_API = 2  # the ganforge plugin API this module is written for


@hookimpl
def ganforge_register_metrics(register: Callable[..., None]) -> None:
    register("class-coverage", class_coverage, description="modes and KL to uniform by a classifier (Stacked MNIST protocol)")
    register("nearest-neighbours", nearest_neighbours, description="k nearest training images of generated samples (memorization)")

