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
        for key in ("steps_per_epoch", "lr", "network", "input_norm", "crop", "batch", "epochs"):
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
    ("learned.batch = ", "learned.input_norm = \"channel\"\nlearned.batch = ", "input_norm.*scalar.*column"),
    ("learned.batch = ", "learned.lr = \"fast\"\nlearned.batch = ", "lr.*positive"),
    ("learned.batch = ", "learned.warm_start = 1\nlearned.batch = ", "warm_start.*true or false"),
    ("learned.batch = ", "learned.warm_start_epochs = 0\nlearned.batch = ", "warm_start_epochs.*positive"),
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
    with pytest.raises(HarnessError, match=r"\(gain, center\) = \(8.0, 0.5\); this recipe needs .*\(gain, center\) = \(1.0, 0.0\)"):
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


def channel_frames(rows: int, seeds, width: int = 128) -> list[np.ndarray]:
    """Token-by-channel frames: each column its own level and spread, two of them 'massive'."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        level = np.linspace(0.3, 0.7, width, dtype=np.float32)
        spread = np.full(width, 0.004, dtype=np.float32)
        spread[[5, 77]] = 0.2  # the massive channels rule the frame's range
        out.append(np.clip(level + spread * rng.standard_normal((rows, width), dtype=np.float32), 0, 1))
    return out


def test_column_statistics_are_per_column_with_a_floor():
    from harness_plugins.hyperprior.training import column_statistics

    frames = channel_frames(200, [0, 1])
    frames = [f.copy() for f in frames]
    for f in frames:
        f[:, 9] = 0.25  # a constant channel
    center, gain = column_statistics(frames, [0, 1])
    assert center.shape == gain.shape == (128,)
    assert abs(float(center[5]) - 0.3 - 0.4 * 5 / 127) < 0.03
    assert 3.0 < gain[5] < 7.0 and 150 < gain[0] < 350  # 1 / 0.2 and 1 / 0.004
    others = np.delete(1.0 / gain, 9)  # the other columns' std
    assert gain[9] == pytest.approx(1.0 / (0.01 * float(np.median(others))), rel=1e-4)  # the floor, not 1 / 0
    assert np.isfinite(gain).all()
    with pytest.raises(HarnessError, match="one width, got 128 and 64"):
        column_statistics([frames[0], frames[1][:, :64]], [0, 1])


def test_column_normalization_is_kept_in_the_checkpoint_and_the_fingerprint():
    plain = FeatureHyperprior(32, 48)
    cols = FeatureHyperprior(32, 48)
    cols.load_state_dict(plain.state_dict())
    cols.set_column_norm(torch.full((128,), 0.5), torch.linspace(1, 100, 128))
    assert cols.columns == 128 and plain.columns is None
    again = FeatureHyperprior.from_state_dict(cols.state_dict())
    assert again.columns == 128 and torch.equal(again.column_gain, cols.column_gain)
    assert fingerprint(again) == fingerprint(cols) != fingerprint(plain)
    other = FeatureHyperprior.from_state_dict(cols.state_dict())
    other.set_column_norm(torch.full((128,), 0.5), torch.linspace(1, 101, 128))
    assert fingerprint(other) != fingerprint(cols)  # the gains are part of the model
    with pytest.raises(HarnessError, match="only one of"):
        FeatureHyperprior.from_state_dict({k: v for k, v in cols.state_dict().items() if k != "column_gain"})
    with pytest.raises(HarnessError, match="finite positive"):
        cols.set_column_norm(torch.zeros(128), torch.zeros(128))
    x = torch.from_numpy(channel_frames(64, [3])[0])[None, None]
    with pytest.raises(HarnessError, match="normalizes 128 columns; the frame has 64"):
        cols(x[..., :64])
    # the network sees (x - c) * g per column, and its output is mapped back the same way
    cols.eval(), plain.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        a = cols(x)["x_hat"]
        torch.manual_seed(0)
        b = plain((x - 0.5) * cols.column_gain)["x_hat"] / cols.column_gain + 0.5
    assert torch.allclose(a, b, atol=1e-5)


def test_column_normalized_network_trains_on_whole_rows_and_codes_bit_exactly(tmp_path):
    frames = channel_frames(100, [0, 1, 2, 3])
    logs: list[str] = []
    result = train(frames, 0.001, tmp_path / "lm", crop=(64, 64), batch=2, epochs=1, steps_per_epoch=2,
                   lr=1e-3, network=(32, 48), column_norm=True, device="cpu", log=logs.append)
    assert result.last.name.endswith("_patch64-128_checkpoint.pth.tar")  # whole rows
    assert any("crop width 64 -> 128" in line for line in logs)
    model = load_checkpoint(result.last)
    assert model.columns == 128 and 3.0 < float(model.column_gain[5]) < 7.0
    codec = HyperpriorCodec(tmp_path, threads=1, pad="edge")
    stream = codec.encode(frames[0][:70], 0.001, "lm")
    first = HyperpriorCodec(tmp_path, threads=1).decode(stream)
    again = HyperpriorCodec(tmp_path, threads=1).decode(stream)
    assert first.shape == (70, 128) and np.array_equal(first, again)
    with pytest.raises(HarnessError, match="normalizes 128 columns"):
        codec.encode(frames[0][:, :64], 0.001, "lm")
    with pytest.raises(HarnessError, match="column normalization True, .*; this recipe needs .*column normalization False"):
        train(frames, 0.001, tmp_path / "lm", crop=(64, 128), batch=2, epochs=2, steps_per_epoch=2, lr=1e-3,
              network=(32, 48), column_norm=False, device="cpu", log=None)
    with pytest.raises(HarnessError, match="multiple of 64"):
        train([f[:, :100] for f in frames], 0.001, tmp_path / "x", crop=(64, 64), batch=2, epochs=1,
              steps_per_epoch=1, network=(32, 48), column_norm=True, device="cpu", log=None)
    with pytest.raises(CodecError, match="input_norm.*scalar, column"):
        plugin.train(frames, 0.001, tmp_path / "y", {"crop": [64, 64], "batch": 1, "epochs": 1,
                                                     "input_norm": "channel"}, None)


def test_warm_start_trains_from_the_lowest_lambda_up(tmp_path):
    frames = channel_frames(100, [0, 1, 2])
    settings = {"crop": [64, 128], "batch": 2, "epochs": 2, "steps_per_epoch": 1, "lr": 1e-3,
                "network": [32, 48], "input_norm": "column", "warm_start": True, "warm_start_epochs": 1,
                "lambdas": [0.001, 0.01], "device": "cpu"}
    with pytest.raises(CodecError, match=r"λ=0.01 needs the λ=0.001 model, trained first; no checkpoint"):
        plugin.train(frames, 0.01, tmp_path, settings, None)
    low = plugin.train(frames, 0.001, tmp_path, settings, None)
    assert low["initialized_from"] is None and len(low["history"]) == 2  # from scratch: `epochs`
    top = plugin.train(frames, 0.01, tmp_path, settings, None)
    assert top["initialized_from"] == low["checkpoint"].name and len(top["history"]) == 1  # warm_start_epochs
    assert "_epoch1_" in top["checkpoint"].name
    parent, child = load_checkpoint(low["checkpoint"]), load_checkpoint(top["checkpoint"])
    assert torch.equal(parent.column_gain, child.column_gain)
    # one step of training moved the weights away from the parent's, but not far
    a, b = parent.g_a[0].weight, child.g_a[0].weight
    assert not torch.equal(a, b) and float((a - b).abs().max()) < 0.01
    with pytest.raises(CodecError, match="warm start needs λ=0.003 among the task's λs.*-o warm_start=0"):
        plugin.train(frames, 0.003, tmp_path, settings, None)
    with pytest.raises(HarnessError, match=r"\(N, M\) = \(32, 48\).*needs \(N, M\) = \(16, 24\)"):
        train(frames, 0.01, tmp_path / "other", crop=(64, 128), batch=2, epochs=1, steps_per_epoch=1,
              network=(16, 24), column_norm=True, init_from=low["checkpoint"], device="cpu", log=None)
    with pytest.raises(HarnessError, match=r"column normalization True.*needs .*column normalization False, \(gain, center\) = \(8.0, 0.5\)"):
        train(frames, 0.01, tmp_path / "other", crop=(64, 128), batch=2, epochs=1, steps_per_epoch=1,
              network=(32, 48), input_norm=(8.0, 0.5), init_from=low["checkpoint"], device="cpu", log=None)
