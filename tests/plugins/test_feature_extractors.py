"""identity, digits-cnn (shipped weights, accuracy, SHA check) and inception-v3 (architecture, errors).

No download anywhere: the Inception tests use a synthetic state dict with the reference key names.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from ganforge.contract.components import DataInfo, FeatureExtractor
from ganforge.io import sha256_file
from ganforge.registry.errors import ConfigError
from ganforge.registry.registry import load_registry
import ganforge_plugins.extractors.digits_cnn as dcnn
import ganforge_plugins.extractors.inception as inc
from ganforge_plugins.extractors.identity import identity
from ganforge_plugins.data.digits import digits_tensors, stacked_digits

# -- identity -------------------------------------------------------------------------------------


def test_identity_flattens_and_knows_its_dim():
    f = identity(DataInfo(sample_shape=(2,)))
    assert isinstance(f, FeatureExtractor) and f.feature_dim == 2 and f.weights_sha256 == ""
    assert torch.equal(f(torch.tensor([[1.0, 2.0], [3.0, 4.0]])), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    img = identity(DataInfo(sample_shape=(3, 4, 4), kind="image"))
    assert img.feature_dim == 48 and img(torch.zeros(5, 3, 4, 4)).shape == (5, 48)


def test_identity_without_info_takes_dim_from_first_batch_and_checks_later_ones():
    f = identity()
    assert f.feature_dim == 0
    assert f(torch.zeros(3, 1, 2, 2)).shape == (3, 4) and f.feature_dim == 4
    with pytest.raises(ValueError) as e:
        f(torch.zeros(3, 5))
    assert "has 5 values" in str(e.value) and "set up for 4" in str(e.value) and "one extractor per dataset" in str(e.value)


# -- digits-cnn -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn():
    return dcnn.digits_cnn()


def test_shipped_weights_small_and_pinned(cnn):
    assert dcnn.DIGITS_CNN_WEIGHTS.stat().st_size < 1_000_000
    assert sha256_file(dcnn.DIGITS_CNN_WEIGHTS) == dcnn.DIGITS_CNN_SHA256 == cnn.weights_sha256
    assert isinstance(cnn, FeatureExtractor) and cnn.name == "digits-cnn" and cnn.feature_dim == 64


def test_digits_cnn_test_accuracy_at_least_97_percent(cnn):
    # The measure reported for the shipped weights: the 359 images of the fixed test split.
    x, y = digits_tensors("test", 8)
    with torch.no_grad():
        acc = (cnn.classify(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97, acc


@pytest.mark.parametrize("resolution", [16, 32])
def test_digits_cnn_same_answers_at_any_resolution_and_channel_count(cnn, resolution):
    x8, _ = digits_tensors("test", 8)
    xr, _ = digits_tensors("test", resolution)
    with torch.no_grad():
        f8 = cnn(x8)
        assert torch.allclose(cnn(xr), f8, atol=1e-5)
        assert torch.allclose(cnn(xr.expand(-1, 3, -1, -1)), f8, atol=1e-5)  # RGB grey: channel mean
    assert f8.shape == (359, 64) and f8.dtype == torch.float32


def test_digits_cnn_is_frozen(cnn):
    cnn.train()
    assert not cnn.training and all(not p.requires_grad for p in cnn.parameters())


def test_stacked_digits_classified_per_channel_hit_all_modes(cnn):
    ds = stacked_digits(num_samples=8000, labels=True, seed=0)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        d = cnn.classify_channels(x).argmax(-1)
    assert d.shape == (8000, 3)
    modes = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
    assert (modes == ds.modes).float().mean() > 0.97
    real = torch.unique(ds.modes).numel()  # 8,000 draws leave ~0.3 of 1,000 modes empty
    assert torch.unique(modes).numel() >= real - 3 and real >= 995


def test_digits_cnn_sha_mismatch_error(tmp_path, monkeypatch):
    bad = tmp_path / "digits_cnn.pt"
    shutil.copy(dcnn.DIGITS_CNN_WEIGHTS, bad)
    with open(bad, "r+b") as f:  # flip one byte in the middle: a corrupt download or edit
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(dcnn, "DIGITS_CNN_WEIGHTS", bad)
    with pytest.raises(ValueError) as e:
        dcnn.digits_cnn()
    msg = str(e.value)
    assert str(bad) in msg and dcnn.DIGITS_CNN_SHA256 in msg and sha256_file(bad) in msg
    assert "corrupt or was changed" in msg and "python scripts/train_digits_cnn.py" in msg and "DIGITS_CNN_SHA256" in msg


def test_digits_cnn_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dcnn, "DIGITS_CNN_WEIGHTS", tmp_path / "gone.pt")
    with pytest.raises(FileNotFoundError, match=r"weights file .*gone\.pt is missing.*train_digits_cnn\.py"):
        dcnn.digits_cnn()


def test_bad_input_shape_error(cnn):
    with pytest.raises(ValueError, match=r"digits-cnn: expected images of shape \(N, C, H, W\), got shape \(4, 64\)"):
        cnn(torch.zeros(4, 64))


# -- inception-v3 ---------------------------------------------------------------------------------

# Shapes from the reference layer names (pytorch-fid / torch-fidelity), written out here rather
# than read from our module, so the test checks the architecture instead of restating it.
REFERENCE_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_2b_3x3.bn.running_var": (64,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
    "fc.weight": (1008, 2048),
}
# torchvision's Inception-v3 has 27,161,264 parameters; without the auxiliary classifier
# (3,326,696) and with 1,008 instead of 1,000 classes (+16,392) that is the FID network.
REFERENCE_PARAMETERS = 27_161_264 - 3_326_696 + 16_392


@pytest.fixture
def no_inception_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_inception_missing_weights_error(no_inception_weights):
    with pytest.raises(FileNotFoundError) as e:
        inc.inception_v3()
    msg = str(e.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg
    assert f"{no_inception_weights}/" in msg
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth" in msg
    assert "GANFORGE_INCEPTION_WEIGHTS" in msg and "never downloads" in msg


def test_inception_missing_weights_through_registry(no_inception_weights):
    reg = load_registry(warn=False)
    with pytest.raises(ConfigError, match="pt_inception-2015-12-05-6726825d.pth were not found"):
        reg.build("feature_extractor", {"name": "inception-v3"})


def test_inception_weights_param_and_env_missing_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"inception-v3: weights='.*nowhere\.pth' does not exist"):
        inc.inception_v3(weights=str(tmp_path / "nowhere.pth"))
    monkeypatch.setenv(inc.INCEPTION_ENV, str(tmp_path / "env.pth"))
    with pytest.raises(FileNotFoundError, match=r"GANFORGE_INCEPTION_WEIGHTS='.*env\.pth' does not exist"):
        inc.inception_v3()


def test_inception_architecture_matches_reference():
    net = inc.FIDInceptionV3()
    sd = net.state_dict()
    for k, shape in REFERENCE_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    assert sum(p.numel() for p in net.parameters()) == REFERENCE_PARAMETERS
    assert not any(k.startswith("AuxLogits") for k in sd)


def test_inception_loads_reference_keys_and_gives_2048_features(tmp_path, no_inception_weights):
    torch.manual_seed(0)
    src = inc.FIDInceptionV3()
    # A synthetic checkpoint as the reference file has it: plain tensors, no BN step counters.
    state = {k: v.clone() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k in state:
        if k.endswith("running_var"):
            state[k] = torch.rand_like(state[k]) + 0.5
    no_inception_weights.mkdir(parents=True)
    path = no_inception_weights / inc.INCEPTION_FILE
    torch.save(state, path)
    net = inc.inception_v3()  # found in the (temporary) torch hub cache
    sha = sha256_file(path)
    path.unlink()  # 95 MB: pytest keeps the last runs' temporary folders
    assert net.weights_sha256 == sha and net.protocol()["weights_file"] == inc.INCEPTION_FILE
    assert torch.equal(net.Mixed_7c.branch_pool.bn.running_var, state["Mixed_7c.branch_pool.bn.running_var"])
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        f = net(torch.rand(2, 1, 16, 16) * 2 - 1)  # greyscale, small: repeated to RGB, resized to 299
    assert f.shape == (2, 2048) and f.dtype == torch.float32 and torch.isfinite(f).all()
    net.forward = lambda x: f  # classify = pool3 @ W^T (no bias), without a second forward pass
    assert torch.allclose(net.classify(torch.zeros(2, 3, 8, 8)), f @ state["fc.weight"].T)


def test_inception_wrong_file_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1), "Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)}, path)
    with pytest.raises(ValueError) as e:
        inc.inception_v3(weights=str(path))
    msg = str(e.value)
    assert "is not the FID Inception-v3 weights" in msg and "missing key(s)" in msg
    assert "unexpected key(s), e.g. conv.weight" in msg and "Conv2d_1a_3x3.conv.weight (32, 3, 5, 5)" in msg


def test_inception_corrupt_file_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read weights file .*broken\.pth.*corrupt or incomplete"):
        inc.inception_v3(weights=str(path))


def test_inception_channel_error():
    net = inc.FIDInceptionV3()
    with pytest.raises(ValueError, match=r"inception-v3: expected 1 or 3 channels, got 2"):
        net.preprocess(torch.zeros(1, 2, 8, 8))


# -- discovery ------------------------------------------------------------------------------------


def test_registered_and_built_through_the_registry():
    reg = load_registry(warn=False)
    for name in ("identity", "digits-cnn", "inception-v3"):
        assert reg.get("feature_extractor", name).plugin == "feature-extractors"
    assert [p.name for p in reg.get("feature_extractor", "inception-v3").parameters()] == ["weights", "quantize"]
    ident = reg.build("feature_extractor", {"name": "identity"}, info=DataInfo(sample_shape=(2,)))
    assert ident.feature_dim == 2
    cnn = reg.build("feature_extractor", {"name": "digits-cnn"})
    assert cnn.protocol()["preprocess"] == dcnn.DIGITS_CNN_PREPROCESS
