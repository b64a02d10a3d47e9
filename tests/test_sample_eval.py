"""`ganforge sample --cond/--cond-grid`, samples written in the data file's units, greyscale PNGs, and
`ganforge evaluate --samples` (a folder or .npz of samples against a reference: a config's dataset, a
folder or an .npz)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli.commands import main

GANFORGE = [sys.executable, "-m", "ganforge"]


def ganforge(args: list[str], capsys) -> tuple[int, str, str]:
    """The command in this process (fast: no second torch import); returns (code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_detector_file(path: Path, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """8×8 one-channel "detector images" around 1,100 (far from the training scale) and one condition."""
    r = np.random.default_rng(0)
    c = r.uniform(0, 1, n).astype(np.float32)
    x = (1000 + 200 * c[:, None, None] * np.ones((8, 8)) + r.normal(0, 5, (n, 8, 8))).astype(np.float32)
    np.savez(path, x=x, c=c)
    return x, c


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """A two-step DCGAN on tensor-file images with one continuous condition, standardized."""
    root = tmp_path_factory.mktemp("cond")
    x, c = make_detector_file(root / "det.npz")
    env = dict(os.environ, GANFORGE_PROGRESS="0")
    out = subprocess.run(GANFORGE + ["fit", "-c", "digits-dcgan", "dataset.name=tensor-file", "dataset.path=det.npz",
                                     "dataset.conditions_key=c", "dataset.normalize=standard", "generator.width=8",
                                     "discriminator.width=8", "train.max_steps=2", "train.batch_size=32",
                                     "metrics.list=[]", "root_dir=runs"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, root / "runs" / "digits-dcgan" / "version_0", x


def test_cond_and_grid_rows_share_the_noise(cond_run, capsys, monkeypatch):
    root, run_dir, _ = cond_run
    monkeypatch.chdir(root)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    code, out, err = ganforge(["sample", ckpt, "--cond", "0.7", "--num", "5", "--out", "one"], capsys)
    assert code == 0, err
    one = np.load(root / "one" / "samples.npz", allow_pickle=False)
    assert one["x"].shape == (5, 1, 8, 8) and np.all(one["y"] == np.float32(0.7))
    code, out, err = ganforge(["sample", ckpt, "--cond-grid", "0:1:3", "--num", "4", "--out", "grid"], capsys)
    assert code == 0, err
    grid = np.load(root / "grid" / "samples.npz", allow_pickle=False)
    assert grid["x"].shape == (12, 1, 8, 8)
    assert grid["y"][:, 0].tolist() == [0.0] * 4 + [0.5] * 4 + [1.0] * 4
    assert json.loads(str(grid["ganforge"]))["cond_grid"] == [[0.0], [0.5], [1.0]]
    for value, row in (("0", 0), ("1", 2)):  # each row is `--cond value` with the same seed: the same noise
        assert ganforge(["sample", ckpt, "--cond", value, "--num", "4", "--out", f"c{value}"], capsys)[0] == 0
        alone = np.load(root / f"c{value}" / "samples.npz")["x"]
        np.testing.assert_array_equal(alone, grid["x"][row * 4:(row + 1) * 4])
    assert not np.allclose(grid["x"][:4], grid["x"][8:])  # the condition changes the samples
    picture = Image.open(root / "grid" / "grid.png")
    assert picture.height > 3 * 8 * 8  # three rows of 8×8 samples shown at 64 pixels


def test_samples_are_written_in_the_files_units(cond_run, capsys, monkeypatch):
    from ganforge.run.checkpoint import load_module

    root, run_dir, x_file = cond_run
    monkeypatch.chdir(root)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ganforge(["sample", ckpt, "--cond", "0.7", "--num", "6", "--out", "units"], capsys)[0] == 0
    saved = np.load(root / "units" / "samples.npz", allow_pickle=False)
    meta = json.loads(str(saved["ganforge"]))
    assert meta["units"] == "file"
    # The generator's own output (training units), mapped back with the file's statistics computed here.
    from ganforge.evaluation.core import sampling_seed

    module = load_module(ckpt)
    g = module.sample(6, y=torch.full((6, 1), 0.7), seed=sampling_seed(0, 0)).double().numpy()
    mean, std = x_file.astype(np.float64).mean(), x_file.astype(np.float64).std()
    np.testing.assert_allclose(saved["x"], g * std + mean, rtol=1e-5)
    assert 900 < saved["x"].mean() < 1300  # the file's units, not ~0
    single = Image.open(root / "units" / "images" / "000000.png")
    assert single.mode == "L" and single.size == (8, 8)  # greyscale data, greyscale PNG


def test_normalization_round_trip_and_checkpoint_info(tmp_path):
    from ganforge.run.checkpoint import info_from_dict
    from ganforge_plugins.data.tensor_file import tensor_file

    r = np.random.default_rng(1)
    img = (r.normal(0, 1, (20, 3, 4, 4)) * np.array([1, 10, 100])[None, :, None, None]
           + np.array([5, -50, 500])[None, :, None, None]).astype(np.float32)
    pts = r.uniform(-7, 30, (40, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", img=img, pts=pts)
    for key, how, channels in (("img", "standard", 3), ("pts", "standard", 2), ("img", "minmax", 1),
                               ("pts", "minmax", 1)):
        ds = tensor_file(str(tmp_path / "d.npz"), samples_key=key, normalize=how)
        raw = torch.from_numpy(img if key == "img" else pts)
        assert len(ds.info.denormalize["scale"]) == channels and len(ds.info.denormalize["offset"]) == channels
        np.testing.assert_allclose(ds.info.to_stored_units(ds.data).numpy(), raw.numpy(), rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(ds.info.from_stored_units(raw), ds.data, rtol=1e-5, atol=1e-5)
        back = info_from_dict(ds.info.to_dict())  # what a checkpoint holds: plain data, same map
        assert back.denormalize == ds.info.denormalize
        torch.testing.assert_close(back.to_stored_units(ds.data), ds.info.to_stored_units(ds.data))
    plain = tensor_file(str(tmp_path / "d.npz"), samples_key="pts")
    assert plain.info.denormalize is None
    torch.testing.assert_close(plain.info.to_stored_units(plain.data).float(), plain.data)
    bad = [({"scale": [1.0, 2.0, 3.0], "offset": [0.0]}, r"\['scale'\] must be a list of 1 or 2 finite numbers \(one per "
                                                         r"feature\), got \[1.0, 2.0, 3.0\]"),
           ({"scale": [float("nan")], "offset": [0.0]}, r"\['scale'\] must be a list of 1 or 2 finite numbers"),
           ({"scale": [0.0], "offset": [0.0]}, r"\['scale'\] has a 0 \(not invertible\)"),
           ({"scale": ["1"], "offset": [0.0]}, r"\['scale'\] must be a list"),
           ({"scale": [1.0]}, r"must be \{'scale': \[...\], 'offset': \[...\]\}"),
           ([1.0, 2.0], r"must be \{'scale'")]
    for value, message in bad:
        with pytest.raises(ValueError, match=message):
            info_from_dict({**plain.info.to_dict(), "denormalize": value})


def test_a_checkpoint_with_a_malformed_normalization_is_one_line(cond_run, capsys, monkeypatch):
    root, run_dir, _ = cond_run
    monkeypatch.chdir(root)
    blob = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    blob["ganforge"]["info"]["denormalize"] = {"scale": [0.0], "offset": [1.0]}
    torch.save(blob, root / "bad.ckpt")
    code, _, err = ganforge(["sample", "bad.ckpt", "--out", "never"], capsys)
    assert code == 2 and err == ("ganforge: error: checkpoint 'bad.ckpt': its data info (ganforge.info) is malformed: "
                                 "DataInfo.denormalize['scale'] has a 0 (not invertible): [0.0]. Use a checkpoint "
                                 "written by ganforge itself.\n")
    assert not (root / "never").exists()


def test_bad_cond_values_name_the_flag(cond_run, capsys, monkeypatch):
    root, run_dir, _ = cond_run
    monkeypatch.chdir(root)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    cases = [
        (["--cond", "0.1,0.2"], "--cond 0.1,0.2: 2 values per condition, but the model has 1 condition dimension; "
                                "give one value."),
        (["--cond", "nan"], "--cond nan: 'nan' is not finite; conditions must be finite numbers."),
        (["--cond", "inf"], "--cond inf: 'inf' is not finite"),
        (["--cond", "abc"], "--cond abc: 'abc' is not a number"),
        (["--cond-grid", "0:1"], "--cond-grid 0:1: expected LO:HI:N"),
        (["--cond-grid", "0:1:0"], "--cond-grid 0:1:0: N 0 must be >= 1"),
        (["--cond-grid", "0:1:x"], "--cond-grid 0:1:x: N 'x' is not a whole number"),
        (["--cond-grid", "0,1:1:3"], "--cond-grid 0,1:1:3: LO has 2 value(s) but HI has 1"),
        (["--cond-grid", "0,0:1,1:3"], "--cond-grid 0,0:1,1:3: 2 values per condition, but the model has 1"),
        (["--cond-grid", "0:nan:3"], "--cond-grid 0:nan:3: 'nan' is not finite"),
        # --class goes with --cond only on a model with classes and conditions (issue 7)
        (["--cond", "1", "--class", "2"], "--class 2: this model is not class-conditional"),
        (["--cond", "1", "--cond-grid", "0:1:2"], "--cond and --cond-grid: give one of them"),
        (["--class", "2"], "--class 2: this model is not class-conditional"),
    ]
    for extra, message in cases:
        code, _, err = ganforge(["sample", ckpt, "--out", "bad", *extra], capsys)
        assert code == 2 and err.startswith(f"ganforge: error: {message}"), (extra, err)
        assert "Traceback" not in err
    assert not (root / "bad").exists()  # nothing written for a refused command
    code, _, err = ganforge(["sample", ckpt, "--out", "neg", "--cond=-0.5", "--num", "2"], capsys)  # negatives work
    assert code == 0, err


def test_cond_refused_for_class_conditional_and_unconditional_models():
    from ganforge.cli.sample_evaluate import _check_cond_dims
    from ganforge.contract.components import DataInfo
    from ganforge.registry.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--cond 0.5: this model is class-conditional \(10 classes\), not "
                                          r"conditioned on continuous values; use --class K \(0..9\)\.$"):
        _check_cond_dims(DataInfo(sample_shape=(1, 8, 8), num_classes=10, name="digits"), "--cond", "0.5", [0.5])
    with pytest.raises(ConfigError, match=r"^--cond-grid 0:1:3: this model is not conditional \(dataset "
                                          r"'gaussian-ring' has no conditions\); leave --cond-grid out\.$"):
        _check_cond_dims(DataInfo(sample_shape=(2,), name="gaussian-ring"), "--cond-grid", "0:1:3", [0.0])
    _check_cond_dims(DataInfo(sample_shape=(2,), cond_dim=2), "--cond", "1,2", [1.0, 2.0])  # fits: no error


def test_greyscale_and_sixteen_bit_pngs(tmp_path):
    from ganforge.reporting.imaging import save_png, to_pil_images

    x = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    grey = to_pil_images(x)[0]
    assert grey.mode == "L" and np.asarray(grey)[0].tolist() == [0, 17, 34, 51]
    save_png(to_pil_images(x, bits=16)[0], tmp_path / "a.png")
    back = Image.open(tmp_path / "a.png")
    assert back.mode.startswith("I") and np.asarray(back).ravel()[[0, 1, 15]].tolist() == [0, 4369, 65535]
    assert to_pil_images(torch.zeros(2, 3, 4, 4))[1].mode == "RGB"
    with pytest.raises(ValueError, match="8- or 16-bit"):
        to_pil_images(x, bits=12)


# -- ganforge evaluate --samples -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """The digits' test split (16×16) as greyscale PNGs, uniform noise of the same size, and .npz copies."""
    from ganforge_plugins.data.digits import digits_tensors

    root = tmp_path_factory.mktemp("folders")
    x, _ = digits_tensors("test", 16)
    real = np.rint((x[:, 0].numpy() + 1) * 127.5).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8)
    for name, arr in (("real", real), ("noise", noise)):
        (root / name).mkdir()
        for i, a in enumerate(arr):
            Image.fromarray(a).save(root / name / f"{i:04d}.png")
    np.savez(root / "real_nhwc.npz", x=real[..., None])  # clean-fid/torch-fidelity layout: uint8 (N, H, W, C)
    np.savez(root / "real_float.npz", x=real[:, None].astype(np.float32) / 127.5 - 1)  # as `ganforge sample` writes
    return root


def test_evaluate_a_folder_of_real_digits_against_the_dataset_and_noise(digit_folders, capsys, monkeypatch):
    monkeypatch.chdir(digit_folders)
    fid = "fid.feature_extractor=digits-cnn"
    code, out, err = ganforge(["evaluate", "--samples", "real", "-c", "digits-dcgan", "--metrics", "fid",
                               "--set", fid, "--json", "real.json"], capsys)
    assert code == 0, err
    assert out.startswith("samples: real (359 samples, image-folder)\nreference: digits-dcgan (digits, 1797 samples)")
    res = json.loads((digit_folders / "real.json").read_text())
    real_fid = res["metrics"]["fid"]["values"]["fid"]
    assert real_fid < 10  # docs/evaluation.md: real vs real 7.1 on disjoint halves; the test split is in "all"
    protocol = res["metrics"]["fid"]["protocol"]
    assert protocol["num_samples"] == 359 and protocol["feature_extractor"] == "digits-cnn"
    assert protocol["sampling"]["source"] == "image-folder" and protocol["sampling"]["channels"] == 1
    assert protocol["sampling"]["generator"] == "none: samples read from --samples"
    assert protocol["sampling"]["path"] == "real" and len(protocol["sampling"]["files_sha256"]) == 64
    assert protocol["reference"]["real_count"] == 1797 and protocol["reference"]["dataset"] == "digits"
    assert res["reference"]["data"]["dataset"] == "digits" and res["reference"]["config"] == "digits-dcgan"
    code, out, err = ganforge(["evaluate", "--samples", "noise", "-c", "digits-dcgan", "--metrics", "fid",
                               "--set", fid, "--json", "noise.json"], capsys)
    assert code == 0, err
    noise_fid = json.loads((digit_folders / "noise.json").read_text())["metrics"]["fid"]["values"]["fid"]
    assert noise_fid > 50 * real_fid and noise_fid > 500
    # The same images as .npz (uint8 channels-last, or floats in [-1, 1]) give the same number.
    for npz in ("real_nhwc.npz", "real_float.npz"):
        code, out, err = ganforge(["evaluate", "--samples", npz, "-c", "digits-dcgan", "--metrics", "fid",
                                   "--set", fid, "--json", "n.json"], capsys)
        assert code == 0, err
        value = json.loads((digit_folders / "n.json").read_text())["metrics"]["fid"]["values"]["fid"]
        assert value == pytest.approx(real_fid, rel=1e-6), npz
    # The config's own metrics when --metrics is left out; the first N samples with --num-samples.
    code, out, err = ganforge(["evaluate", "--samples", "real", "-c", "digits-dcgan", "--num-samples", "100",
                               "--set", "nearest-neighbours.k=2", "--json", "cfg.json"], capsys)
    assert code == 0, err
    metrics = json.loads((digit_folders / "cfg.json").read_text())["metrics"]
    assert set(metrics) == {"fid", "class-coverage", "nearest-neighbours"}
    assert metrics["fid"]["protocol"]["num_samples"] == 100 and metrics["class-coverage"]["values"]["modes"] >= 9


def test_evaluate_a_folder_against_a_folder_or_npz(digit_folders, capsys, monkeypatch):
    monkeypatch.chdir(digit_folders)
    ident = ["--metrics", "fid", "--set", "fid.feature_extractor=identity"]
    code, out, err = ganforge(["evaluate", "--samples", "real_nhwc.npz", "--reference", "real", *ident,
                               "--json", "same.json"], capsys)
    assert code == 0, err
    same = json.loads((digit_folders / "same.json").read_text())
    assert abs(same["metrics"]["fid"]["values"]["fid"]) < 1e-4  # the same images: distance 0 (sqrtm rounding)
    assert same["reference"]["source"] == "image-folder"
    code, out, err = ganforge(["evaluate", "--samples", "noise", "--reference", "real_float.npz", *ident,
                               "--json", "far.json"], capsys)
    assert code == 0, err
    assert json.loads((digit_folders / "far.json").read_text())["metrics"]["fid"]["values"]["fid"] > 50


def test_evaluate_the_samples_of_a_run_like_its_checkpoint(cond_run, capsys, monkeypatch):
    """samples.npz in the file's units, evaluated against the run's config, gives the checkpoint's own FID:
    the normalization is inverted on the way out and applied again on the way in."""
    root, run_dir, _ = cond_run
    monkeypatch.chdir(root)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ident = ["--metrics", "fid", "--set", "fid.feature_extractor=identity"]
    assert ganforge(["sample", ckpt, "--num", "200", "--out", "run_samples"], capsys)[0] == 0
    code, _, err = ganforge(["evaluate", ckpt, *ident, "--num-samples", "200", "--json", "ck.json"], capsys)
    assert code == 0, err
    code, _, err = ganforge(["evaluate", "--samples", "run_samples/samples.npz", "-c", run_dir / "config.yaml",
                             *ident, "--json", "sm.json"], capsys)
    assert code == 0, err
    # `sample --num N` writes the samples `evaluate --num-samples N` scores (its noise and conditions rule)
    from ganforge.run.checkpoint import load_module
    from ganforge.evaluation.core import generation_conditions, sampling_seed

    module = load_module(ckpt)
    saved = np.load(root / "run_samples" / "samples.npz", allow_pickle=False)
    s = sampling_seed(0, 0)
    y = generation_conditions(module.info, torch.utils.data.TensorDataset(torch.zeros(256), torch.from_numpy(
        np.load(root / "det.npz")["c"])[:, None]), 200, s)
    torch.testing.assert_close(torch.from_numpy(saved["y"]), y)
    torch.testing.assert_close(module.info.from_stored_units(torch.from_numpy(saved["x"])), module.sample(200, y, s),
                               atol=1e-5, rtol=0)
    by_ckpt = json.loads((root / "ck.json").read_text())["metrics"]["fid"]["values"]["fid"]
    by_samples = json.loads((root / "sm.json").read_text())["metrics"]["fid"]["values"]["fid"]
    # The 2-step generator's samples vary by ~0.01 per pixel, so float32 rounding in the file's units (~1e-6)
    # moves the covariance by ~1e-4: equal to 1e-3 (an unnormalized comparison would differ by orders).
    assert by_samples == pytest.approx(by_ckpt, rel=1e-3)


def test_evaluate_bad_inputs(digit_folders, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = digit_folders / "real"
    (tmp_path / "empty").mkdir()
    (tmp_path / "mixed").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "mixed" / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "mixed" / "b.png")
    (tmp_path / "small").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "small" / "a.png")
    Image.new("L", (8, 8), 90).save(tmp_path / "small" / "b.png")
    (tmp_path / "one").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "one" / "a.png")
    (tmp_path / "colour").mkdir()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "colour" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    np.savez(tmp_path / "text.npz", x=np.array(["a", "b"]))
    np.savez(tmp_path / "nan.npz", x=np.array([[[0.0, np.nan]]], dtype=np.float32))
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    ref = ["-c", "digits-dcgan", "--metrics", "fid", "--set", "fid.feature_extractor=digits-cnn"]
    cases = [
        (["--samples", "empty", *ref], "--samples (dataset 'image-folder' from plugin 'image-data'"),
        (["--samples", "empty", *ref], "image-folder: no images in 'empty'"),
        (["--samples", "mixed", *ref], "images in 'mixed' have different sizes and resolution is not set"),
        (["--samples", "small", *ref], "--samples small: samples of shape (1, 8, 8), but the reference "
                                       "(digits-dcgan) has samples of shape (1, 16, 16)"),
        (["--samples", "one", *ref], "--metrics fid (metric 'fid' from plugin 'frechet'"),
        (["--samples", "one", *ref], "on --samples one (1 samples): fid: 1 generated samples; need at least 2"),
        (["--samples", "colour", *ref], "--samples colour: colour images, but the reference is greyscale"),
        (["--samples", "nowhere", *ref], "--samples nowhere: not found"),
        (["--samples", "notes.txt", *ref], "--samples notes.txt: a '.txt' file; give a folder"),
        (["--samples", "text.npz", *ref], "--samples text.npz: array 'x' has dtype <U1; expected numbers"),
        (["--samples", "nan.npz", *ref], "--samples nan.npz: array 'x' holds 1 non-finite value"),
        (["--samples", "two.npz", *ref], "--samples two.npz: no array named 'x' and 2 other numeric arrays (a, b)"),
        (["--samples", "broken.npz", *ref], "--samples broken.npz: cannot read it as a NumPy .npz file"),
        (["--samples", real], f"--samples {real}: give the real data to compare with: --reference"),
        (["--samples", real, "--reference", real, "-c", "digits-dcgan"], "--reference"),
        (["--samples", real, *ref, "--num-samples", "1000"], f"--num-samples 1000: --samples {real} holds only 359"),
        (["--samples", real, *ref, "--set", "fid.num_samples=10"], "--set fid.num_samples: with --samples"),
        (["--samples", real, "--reference", real, "--metrics", "fid", "--set", "dataset.resolution=8"],
         "--set dataset.resolution=8: dataset parameters only with -c CONFIG"),
        (["--samples", real, "--reference", real], "no metrics: give --metrics"),
        (["--samples", real, "--no-ema", *ref], "--no-ema: only for a checkpoint"),
        (["ckpt.ckpt", "--samples", real, *ref], f"--samples {real} and the checkpoint ckpt.ckpt: give one of them"),
        (["--reference", real], f"--reference {real}: only with --samples"),
        ([], "nothing to evaluate: give a checkpoint"),
    ]
    for extra, message in cases:
        code, _, err = ganforge(["evaluate", *extra], capsys)
        assert code == 2 and "ganforge: error: " in err and message in err, (extra, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
    # -c with a dataset override: the reference is the digits at 8×8, so 8×8 samples now fit.
    code, _, err = ganforge(["evaluate", "--samples", "small", *ref, "--set", "dataset.resolution=8"], capsys)
    assert code == 0, err


def test_sixteen_bit_greyscale_data_gives_sixteen_bit_sample_pngs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det").mkdir()
    r = np.random.default_rng(0)
    for i in range(8):  # 16-bit detector images (values far above 255)
        Image.fromarray(r.integers(1000, 60000, (8, 8)).astype(np.uint16)).save(tmp_path / "det" / f"{i}.png")
    env = dict(os.environ, GANFORGE_PROGRESS="0")
    out = subprocess.run(GANFORGE + ["fit", "-c", "folder-dcgan", "dataset.root=det", "dataset.resolution=8",
                                     "dataset.channels=1", "generator.width=8", "discriminator.width=8",
                                     "train.max_steps=1", "train.batch_size=4", "metrics.list=[]", "root_dir=runs"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = tmp_path / "runs" / "folder-dcgan" / "version_0" / "checkpoints" / "last.ckpt"
    assert ganforge(["sample", ckpt, "--num", "3", "--out", "s"], capsys)[0] == 0
    png = Image.open(tmp_path / "s" / "images" / "000000.png")
    assert png.mode.startswith("I") and png.size == (8, 8)  # 16-bit greyscale, not 8-bit RGB
    saved = np.load(tmp_path / "s" / "samples.npz")["x"]
    expected = np.rint((np.clip(saved[0, 0], -1, 1) + 1) / 2 * 65535)
    np.testing.assert_allclose(np.asarray(png, dtype=np.float64), expected, atol=1)


def test_evaluate_points_from_an_npz_against_the_ring(tmp_path, capsys, monkeypatch):
    """Points made elsewhere, scored by the ring's own protocol (mode coverage): all 8 modes, or 4 of them."""
    monkeypatch.chdir(tmp_path)
    r = np.random.default_rng(0)
    k = r.integers(0, 8, 2500)
    x = np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], 1) + r.normal(0, 0.01, (2500, 2))
    np.savez(tmp_path / "all.npz", x=x.astype(np.float32))
    np.savez(tmp_path / "half.npz", x=x[k < 4].astype(np.float32))
    results = {}
    for name in ("all", "half"):
        code, out, err = ganforge(["evaluate", "--samples", f"{name}.npz", "-c", "ring8", "--json", f"{name}.json"],
                                  capsys)
        assert code == 0, err
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())["metrics"]["mode-coverage"]["values"]
    assert results["all"]["modes"] == 8 and results["all"]["high_quality"] > 0.98
    assert results["half"]["modes"] == 4 and results["half"]["kl_uniform"] == pytest.approx(np.log(2), abs=0.01)
