"""The ``inception-v3`` feature extractor: the FID network, 2048-d pool3 features.

Inception-v3 as in TensorFlow's 2015-12-05 graph, the one pytorch-fid and torch-fidelity use. The
weights are read from a local file (docs/evaluation.md says where to put it); never downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge import NEVER_EXECUTES, UnsafeFileError, sha256_file, torch_load_data
from ganforge_plugins.extractors.frozen import FrozenExtractor, check_images

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
#: torch-fidelity's (and so torchmetrics') conversion of the same TensorFlow graph; same layer names.
INCEPTION_FILE_TORCH_FIDELITY = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_ENV = "GANFORGE_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299
INCEPTION_PREPROCESS = (
    "[-1, 1] input; 1-channel images repeated to 3; optional 8-bit quantization; resize to 299×299 with "
    "torch bilinear interpolation (align_corners=False, no antialias) as pytorch-fid"
)


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, TensorFlow's), ReLU: Inception's unit."""

    def __init__(self, cin: int, cout: int, kernel: Any, stride: int = 1, padding: Any = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pooling ignores the zero padding at the borders.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3 and pooled branches."""

    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _ReduceB(nn.Module):
    """35→17 grid reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _MixedC(nn.Module):
    """17×17 block with factorized 7×7 convolutions (1×7 then 7×1)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = _ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = _ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = _ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = _ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _ReduceD(nn.Module):
    """17→8 grid reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class _MixedE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs.

    ``max_pool``: the last block of the FID graph pools with max instead of average (a quirk of
    that TensorFlow graph that the FID reference keeps).
    """

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(FrozenExtractor):
    """Inception-v3 as in the TensorFlow FID graph; ``forward`` returns the 2048-d pool3 features.

    Layer names follow pytorch-fid/torch-fidelity, so their weight files load unchanged. The
    1008-way ``fc`` layer is kept only so those files load strictly; it is not used for features.

    Args:
        quantize: Round inputs to 256 levels first, as when generated images are saved to PNG
            and read back (what FID implementations working from files see).
    """

    name = "inception-v3"
    feature_dim = 2048
    num_classes = 1008  # the TensorFlow graph's 1,000 ImageNet classes plus 8 unused outputs

    def __init__(self, quantize: bool = True) -> None:
        super().__init__()
        self.quantize = quantize
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _ReduceB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _ReduceD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.weights_file = ""
        self.freeze()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1 or 3, H, W)`` in ``[-1, 1]`` → ``(N, 3, 299, 299)`` in ``[-1, 1]``."""
        check_images("inception-v3", x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(
                f"inception-v3: expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                "Inception features are defined for greyscale or RGB images only."
            )
        dtype = self.fc.weight.dtype
        x = x.to(dtype)
        if self.quantize:
            x = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
        return F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """pool3 features ``(N, 2048)``."""
        h = self.preprocess(x)
        h = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(h)))
        h = F.max_pool2d(h, 3, stride=2)
        h = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h))
        h = F.max_pool2d(h, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            h = block(h)
        return h.mean(dim=(2, 3)).to(torch.float32)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, 1008)`` for the Inception Score: ``pool3 @ fc.weight.T`` *without* the bias,
        as the original Inception Score code (and torch-fidelity's default ``logits_unbiased``)."""
        return self.forward(x) @ self.fc.weight.to(torch.float32).T

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "weights_file": self.weights_file, "preprocess": INCEPTION_PREPROCESS,
                "quantize_8bit": self.quantize, "layer": "pool3",
                "logits": "pool3 @ fc.weight.T, no bias (Inception Score convention)"}


def load_inception_state_dict(net: FIDInceptionV3, state: Any, source: str) -> None:
    """Load ``state`` strictly (batch-norm step counters excepted), naming ``source`` in any error."""
    if not isinstance(state, dict):
        raise ValueError(
            f"inception-v3: {source} holds a {type(state).__name__}, not a state dict of tensors; expected "
            f"{INCEPTION_FILE} from {INCEPTION_URL}."
        )
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        if wrong:
            parts.append(f"{len(wrong)} wrong shape(s), e.g. {'; '.join(wrong[:3])}")
        raise ValueError(
            f"inception-v3: {source} is not the FID Inception-v3 weights: {'; '.join(parts)}. Expected "
            f"{INCEPTION_FILE} (from {INCEPTION_URL}) or torch-fidelity's {INCEPTION_FILE_TORCH_FIDELITY}."
        )
    net.load_state_dict(state, strict=False)


def find_inception_weights(weights: Optional[str] = None) -> Path:
    """The weights file: ``weights``, else ``$GANFORGE_INCEPTION_WEIGHTS``, else the torch hub cache."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"inception-v3: weights={weights!r} does not exist. Point it at {INCEPTION_FILE} "
                f"(normally obtained from {INCEPTION_URL}; ganforge never downloads it)."
            )
        return path
    env = os.environ.get(INCEPTION_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"inception-v3: {INCEPTION_ENV}={env!r} does not exist. Point it at {INCEPTION_FILE} "
                f"(normally obtained from {INCEPTION_URL}), or unset it to use the torch hub cache."
            )
        return path
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for name in (INCEPTION_FILE, INCEPTION_FILE_TORCH_FIDELITY):
        if (hub / name).is_file():
            return hub / name
    raise FileNotFoundError(
        f"inception-v3: the FID Inception weights {INCEPTION_FILE} were not found. Put that file into "
        f"{hub}/ (the torch hub cache: $TORCH_HOME/hub/checkpoints), or set {INCEPTION_ENV}=/path/to/{INCEPTION_FILE}, "
        f"or give the extractor's `weights` parameter. The file is normally obtained from {INCEPTION_URL} "
        f"— ganforge never downloads it: fetch it on a machine with network access and copy it here. "
        f"torch-fidelity's {INCEPTION_FILE_TORCH_FIDELITY} (what torchmetrics' FID downloads) is accepted in "
        "the same folder."
    )


def inception_v3(weights: Optional[str] = None, quantize: bool = True) -> FIDInceptionV3:
    """FID Inception-v3, 2048-d pool3 features; weights from a local file (never downloaded).

    Args:
        weights: Path of ``pt_inception-2015-12-05-6726825d.pth``. Default:
            ``$GANFORGE_INCEPTION_WEIGHTS``, else ``<torch hub dir>/checkpoints/``.
        quantize: Round inputs to 8 bits first, as when images are saved to PNG (see
            :class:`FIDInceptionV3`).
    """
    path = find_inception_weights(weights)
    try:
        state = torch_load_data(path)
    except UnsafeFileError as exc:
        raise ValueError(
            f"inception-v3: weights file {exc}; {NEVER_EXECUTES}, so it was not loaded and nothing in it ran. "
            f"Replace it with {INCEPTION_FILE} from {INCEPTION_URL}."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        # Only the first line of torch's message: the rest suggests weights_only=False, which is
        # the wrong advice for a damaged file (and unsafe for an untrusted one).
        first = (str(exc).splitlines() or [""])[0][:160]
        raise ValueError(
            f"inception-v3: cannot read weights file {path} ({type(exc).__name__}: {first}). The file is corrupt "
            f"or incomplete; replace it with {INCEPTION_FILE} from {INCEPTION_URL}."
        ) from exc
    net = FIDInceptionV3(quantize=quantize)
    load_inception_state_dict(net, state, str(path))
    net.weights_sha256 = sha256_file(path)
    net.weights_file = path.name
    return net.freeze()
