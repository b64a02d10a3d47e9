"""The ``digits-cnn`` feature extractor: a small classifier trained here on the digits, shipped with ganforge.

Trained on the digits' train split by ``scripts/train_digits_cnn.py``: 64-d features and 10-class
logits, no download. Works at any resolution and channel count, and classifies stacked digits
channel by channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import sha256_file, torch_load_data
from ganforge_plugins.extractors.frozen import FrozenExtractor, check_images

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DIGITS_CNN_WEIGHTS = WEIGHTS_DIR / "digits_cnn.pt"
#: SHA-256 of ``weights/digits_cnn.pt`` as written by ``scripts/train_digits_cnn.py``.
DIGITS_CNN_SHA256 = "c32cb1b9ef535a4aa5fee1a110b34dda075c3fad7c771f8f9e0528e1bc0809ba"
DIGITS_CNN_INPUT = 8
DIGITS_CNN_PREPROCESS = (
    "mean over channels, then torch area interpolation (average pooling) to 8×8; input in [-1, 1]"
)


class DigitsCNN(FrozenExtractor):
    """A small CNN for 8×8 digits: 64-d features (penultimate layer) and 10-class logits.

    Any ``(N, C, H, W)`` input in ``[-1, 1]`` is reduced to one channel by averaging and to 8×8
    by area interpolation, so nearest-upscaled digits map back to exactly what it was trained on.
    Layers: conv3×3(32) → conv3×3(64) → maxpool → conv3×3(64) → maxpool → fc(64) → fc(10), ReLU
    between, no batch norm or dropout (the output does not depend on train/eval mode).
    """

    name = "digits-cnn"
    feature_dim = 64
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 2 * 2, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, 10)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` in ``[-1, 1]`` → ``(N, 1, 8, 8)`` (channel mean, area resize)."""
        check_images("digits-cnn", x)
        x = x.to(torch.float32).mean(dim=1, keepdim=True)
        if x.shape[-2:] != (DIGITS_CNN_INPUT, DIGITS_CNN_INPUT):
            x = F.interpolate(x, size=(DIGITS_CNN_INPUT, DIGITS_CNN_INPUT), mode="area")
        return x

    def _features8(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, 64)``."""
        return self._features8(self.preprocess(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 10)`` of the digit in each image (channels averaged)."""
        return self.fc2(self._features8(self.preprocess(x)))

    def classify_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, 10)``: each channel classified as its own digit (stacked digits)."""
        check_images("digits-cnn", x)
        n, c = x.shape[:2]
        return self.classify(x.reshape(n * c, 1, *x.shape[-2:])).reshape(n, c, 10)

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "preprocess": DIGITS_CNN_PREPROCESS,
                "trained_on": "digits train split (scripts/train_digits_cnn.py)"}


def load_digits_cnn(path: Optional[Path] = None, expected_sha256: Optional[str] = None) -> DigitsCNN:
    """The shipped digits classifier, after checking its file against :data:`DIGITS_CNN_SHA256`."""
    path = Path(path or DIGITS_CNN_WEIGHTS)
    expected = expected_sha256 or DIGITS_CNN_SHA256
    fix = "Restore it from the repository (git checkout -- {p}) or re-create it with `python scripts/train_digits_cnn.py`."
    if not path.is_file():
        raise FileNotFoundError(f"digits-cnn: weights file {path} is missing. " + fix.format(p=path))
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"digits-cnn: weights file {path} has SHA-256 {actual}, expected {expected}: the file is corrupt or "
            f"was changed. " + fix.format(p=path) + " If you re-trained it on purpose, put the SHA-256 the script "
            "prints into DIGITS_CNN_SHA256 in ganforge_plugins/extractors/digits_cnn.py (numbers computed with the "
            "old weights are then no longer comparable)."
        )
    net = DigitsCNN()
    net.load_state_dict(torch_load_data(path))  # SHA-256 checked above; still data only
    net.weights_sha256 = actual
    net.freeze()
    return net


def digits_cnn() -> DigitsCNN:
    """Small CNN trained on the digits (shipped, SHA-256 checked): 64-d features, classify() gives 10 logits."""
    return load_digits_cnn()
