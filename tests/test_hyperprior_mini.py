"""The hyperprior's mini-anchor settings: CTC keys (checked, read), input normalization, smaller network, edge padding."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path
import shutil

import numpy as np
import pytest
import torch

import harness_plugins.hyperprior as plugin
from harness import CodecError, HarnessError
from harness.ctc import builtin_ctc_dir, load_ctc
from harness.errors import CTCError
from harness.training import training_settings
from harness_plugins.hyperprior.codec import Header, HyperpriorCodec
from harness_plugins.hyperprior.model import FeatureHyperprior, fingerprint, load_checkpoint
from harness_plugins.hyperprior.training import train

torch.set_num_threads(1)


def mini_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped mini CTC with one line of tasks.toml replaced."""
    root = tmp_path / "ctc"
    shutil.copytree(builtin_ctc_dir("mini"), root)
    text = (root / "tasks.toml").read_text()
    assert old in text
    (root / "tasks.toml").write_text(text.replace(old, new, 1))
    return root


def centred(shape, seed, std=0.05):
    """A frame like the mini ones: a sliver of [0, 1] around 0.5."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + std * rng.standard_normal(shape), 0, 1).astype(np.float32)


def test_the_mini_ctc_training_keys_are_read():
    ctc = load_ctc("mini")
    for task in ("sal", "lm"):
        table = ctc.task(task).training
        settings = training_settings(ctc, task, {})
        for key in ("steps_per_epoch", "lr", "network", "input_gain", "input_center", "crop", "batch", "epochs"):
            assert key in table, key
            assert settings[key] == table[key], key
        # a user's override wins over the CTC
        assert training_settings(ctc, task, {"steps_per_epoch": 3, "lr": None})["steps_per_epoch"] == 3
        assert training_settings(ctc, task, {"lr": None})["lr"] == table["lr"]


def test_paper_ctc_keeps_the_official_recipe():
    settings = training_settings(load_ctc("paper"), "cls", {})
    assert settings["lr"] == 1e-4 and "network" not in settings and "input_gain" not in settings
    assert "steps_per_epoch" not in settings


@pytest.mark.parametrize("old,new,message", [
    ("learned.batch = ", "learned.bacth = 1\nlearned.batch = ", "unknown key.*bacth"),
    ("learned.batch = ", "learned.steps_per_epoch = 0\nlearned.batch = ", "steps_per_epoch.*positive"),
    ("learned.batch = ", "learned.network = [64]\nlearned.batch = ", "network.*two positive"),
    ("learned.batch = ", "learned.input_gain = -2.0\nlearned.batch = ", "input_gain.*positive"),
    ("learned.batch = ", "learned.lr = \"fast\"\nlearned.batch = ", "lr.*positive"),
])
def test_bad_or_unknown_hyperprior_keys_are_refused(tmp_path, old, new, message):
    # replace the first task's (sal) keys; drop any existing same key so TOML stays valid
    root = tmp_path / "ctc"
    shutil.copytree(builtin_ctc_dir("mini"), root)
    key = new.split(" =")[0]
    lines = [line for line in (root / "tasks.toml").read_text().splitlines()
             if not (line.startswith(key + " =") and key != "learned.batch")]
    text = "\n".join(lines) + "\n"
    (root / "tasks.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(CTCError, match=message):
        load_ctc(root)


def test_unknown_training_setting_is_an_error(tmp_path):
    with pytest.raises(CodecError, match="unknown training setting.*stepz"):
        plugin.train([centred((64, 64), 0)], 0.01, tmp_path, {"crop": [64, 64], "batch": 1, "epochs": 1,
                                                              "stepz": "3"}, None)
    with pytest.raises(CodecError, match="network.*two"):
        plugin.train([centred((64, 64), 0)], 0.01, tmp_path, {"crop": [64, 64], "batch": 1, "epochs": 1,
                                                              "network": "64"}, None)


def test_input_normalization_is_kept_in_the_checkpoint_and_the_fingerprint():
    plain = FeatureHyperprior(32, 48)
    assert not any(k.startswith("input_") for k in plain.state_dict())  # official layout unchanged
    norm = FeatureHyperprior(32, 48, input_gain=8.0, input_center=0.5)
    norm.load_state_dict(plain.state_dict())  # same weights ...
    assert (norm.input_gain, norm.input_center) == (1.0, 0.0)  # ... and a plain checkpoint means no normalization
    norm = FeatureHyperprior(32, 48, input_gain=8.0, input_center=0.5)
    norm.load_state_dict({**plain.state_dict(), "input_gain": torch.tensor(8.0), "input_center": torch.tensor(0.5)})
    again = FeatureHyperprior.from_state_dict(norm.state_dict())
    assert (again.N, again.M, again.input_gain, again.input_center) == (32, 48, 8.0, 0.5)
    assert fingerprint(again) == fingerprint(norm) != fingerprint(plain)
    # the network sees (x - 0.5) * 8: same output as the plain network fed that by hand
    x = torch.from_numpy(centred((1, 1, 64, 64), 1))
    with torch.no_grad():
        plain.eval(), norm.eval()
        torch.manual_seed(0)
        a = norm(x)["x_hat"]
        torch.manual_seed(0)
        b = plain((x - 0.5) * 8.0)["x_hat"] / 8.0 + 0.5
    assert torch.allclose(a, b, atol=1e-6)


def test_decompress_clamps_after_the_inverse_normalization():
    torch.manual_seed(0)
    model = FeatureHyperprior(32, 48, input_gain=10.0, input_center=0.5).eval()
    model.update(force=True)
    x = torch.from_numpy(centred((64, 64), 2))[None, None]
    out = model.compress(x)
    g_s = model.g_s

    class MinusTwo(torch.nn.Module):
        def forward(self, y):
            return g_s(y) * 0 - 2.0

    model.g_s = MinusTwo()  # the network says -2: x = -2 / 10 + 0.5 = 0.3
    x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    assert torch.allclose(x_hat, torch.full_like(x_hat, 0.3))
    # CompressAI's own decompress clamps the network's output to [0, 1] first: 0 / 10 + 0.5
    wrong = super(FeatureHyperprior, model).decompress(out["strings"], out["shape"])["x_hat"] / 10.0 + 0.5
    assert torch.allclose(wrong, torch.full_like(x_hat, 0.5))
    model.g_s = g_s
    assert float(model.decompress(out["strings"], out["shape"])["x_hat"].min()) >= 0.0  # then clamped


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    frames = [centred((70, 128), 0), centred((130, 200), 1), centred((130, 200), 2)]
    root = tmp_path_factory.mktemp("ckpt")
    result = train(frames, 0.01, root / "sal", crop=(64, 64), batch=2, epochs=1, steps_per_epoch=2, lr=1e-3,
                   network=(32, 48), input_norm=(8.0, 0.5), device="cpu", log=None)
    return root, result, frames


def test_small_normalized_network_trains_and_codes(small):
    root, result, frames = small
    model = load_checkpoint(result.last)
    assert (model.N, model.M, model.input_gain, model.input_center) == (32, 48, 8.0, 0.5)
    codec = HyperpriorCodec(root, threads=1)
    stream = codec.encode(frames[0], 0.01, "sal")
    decoded = HyperpriorCodec(root, threads=1).decode(stream)
    assert decoded.shape == frames[0].shape
    assert abs(float(decoded.mean()) - 0.5) < 0.1  # not clamped to 0 or 1


def test_resume_with_another_network_or_normalization_is_refused(small):
    root, result, frames = small
    with pytest.raises(HarnessError, match=r"\(N, M\) = \(32, 48\)"):
        train(frames, 0.01, root / "sal", crop=(64, 64), batch=2, epochs=1, steps_per_epoch=2, lr=1e-3,
              network=(16, 24), input_norm=(8.0, 0.5), device="cpu", log=None)
    with pytest.raises(HarnessError, match="normalizes its input"):
        train(frames, 0.01, root / "sal", crop=(64, 64), batch=2, epochs=1, steps_per_epoch=2, lr=1e-3,
              network=(32, 48), input_norm=(1.0, 0.0), device="cpu", log=None)


def test_edge_padding_changes_only_what_the_encoder_sends(small):
    root, _, frames = small
    frame = frames[0]  # 70 x 128: 58 rows of padding
    zero, edge = HyperpriorCodec(root, threads=1), HyperpriorCodec(root, threads=1, pad="edge")
    a, b = zero.encode(frame, 0.01, "sal"), edge.encode(frame, 0.01, "sal")
    assert a != b
    assert Header.unpack(a)[0].height == Header.unpack(b)[0].height == 70
    for stream in (a, b):  # one decoder for both
        assert zero.decode(stream).shape == frame.shape
    seen = []
    real = edge.model("sal", 0.01)[0].compress
    edge._models[("sal", 0.01)] = (type("M", (), {"compress": lambda self, x: seen.append(x) or real(x)})(),
                                  edge.model("sal", 0.01)[1])
    edge.encode(frame, 0.01, "sal")
    padded = seen[0][0, 0].numpy()
    assert padded.shape == (128, 128)
    assert np.array_equal(padded[:29], np.repeat(frame[:1], 29, axis=0))  # floor(58 / 2) rows on top
    assert np.array_equal(padded[29:99], frame)
    with pytest.raises(CodecError, match="pad must be one of"):
        HyperpriorCodec(root, pad="mirror")
    with pytest.raises(CodecError, match="pad must be one of"):
        plugin.make_codec({"checkpoints": str(root), "pad": "mirror"})
