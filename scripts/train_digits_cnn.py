"""Train the `digits-cnn` feature extractor and write plugins/ganforge_plugins/extractors/weights/digits_cnn.pt.

Usage: .venv/bin/python scripts/train_digits_cnn.py [--out PATH]

Trains on the digits' fixed train split (1,438 images), reports train and test accuracy (test:
the 359 held-out images) and the SHA-256 of the written file, which must equal
DIGITS_CNN_SHA256 in plugins/ganforge_plugins/extractors/digits_cnn.py. Everything is seeded and
runs on one thread with deterministic kernels, so the same torch build writes the same bytes
(about a minute on one CPU core).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.io import atomic_write_bytes, sha256_file
from ganforge_plugins.extractors.digits_cnn import DIGITS_CNN_SHA256, DIGITS_CNN_WEIGHTS, DigitsCNN
from ganforge_plugins.data.digits import digits_tensors

SEED = 0
EPOCHS = 60
BATCH = 64
LR = 2e-3
WEIGHT_DECAY = 1e-4
SHIFT = 1  # augmentation: random translation by up to SHIFT pixels


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random translation by -SHIFT..SHIFT pixels per image, background (-1) padding.

    Handwriting is not centred exactly; shifts are the cheapest invariance to teach an 8×8
    classifier, and they keep the 17 grey levels of the data (no interpolation).
    """
    n = x.shape[0]
    padded = F.pad(x, (SHIFT,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * SHIFT + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * SHIFT + 1, (n,), generator=g)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]: dy[i] + 8, dx[i]: dx[i] + 8]
    return out


@torch.no_grad()
def accuracy(net: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    return (net.classify(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DIGITS_CNN_WEIGHTS, help="where to write the weights")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)

    x_train, y_train = digits_tensors("train", 8)
    x_test, y_test = digits_tensors("test", 8)
    net = DigitsCNN()  # no batch norm or dropout: train and eval mode compute the same function
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(x_train) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    start = time.time()
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(x_train), generator=g)
        total = 0.0
        for i in range(0, len(perm), BATCH):
            idx = perm[i: i + BATCH]
            logits = net.classify(augment(x_train[idx], g))
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {total / len(x_train):.4f}  test acc {accuracy(net, x_test, y_test):.4f}")
    train_acc, test_acc = accuracy(net, x_train, y_train), accuracy(net, x_test, y_test)

    # Serialize to memory first: torch.save names the archive after the file, and the atomic
    # writer's temporary name would otherwise end up in the bytes (and the SHA-256).
    buf = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, buf)
    atomic_write_bytes(args.out, buf.getvalue())
    args.out.chmod(0o644)  # the atomic writer's temporary file is private (0600); weights are shipped data
    digest = sha256_file(args.out)
    print(f"train accuracy {train_acc:.4f} ({len(x_train)} images)")
    print(f"test accuracy  {test_acc:.4f} ({len(x_test)} images)")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.time() - start:.0f} s")
    print(f"sha256 {digest}")
    if digest != DIGITS_CNN_SHA256:
        print(f"note: differs from DIGITS_CNN_SHA256 = {DIGITS_CNN_SHA256}; put the new value there if you keep this file")


if __name__ == "__main__":
    main()
