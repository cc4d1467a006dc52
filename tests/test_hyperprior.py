"""The hyperprior plugin: tiny real training, real entropy coding, checkpoints, fresh-process decode (CPU)."""

from __future__ import annotations

import json

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from dataclasses import replace
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import harness_plugins.hyperprior as plugin
from harness import CodecError, HarnessError
from harness_plugins.hyperprior.checkpoints import find_checkpoint
from harness_plugins.hyperprior.codec import Header, HyperpriorCodec, header_size
from harness_plugins.hyperprior.model import FeatureHyperprior, fingerprint, load_checkpoint, read_state_dict
from harness_plugins.hyperprior.training import effective_crop, train

torch.set_num_threads(1)  # robust when the 2 cores are shared; 2 is checked in a subprocess
LAM = 0.01
TASK = "cls"


def packed_like(shape, seed):
    """A [0, 1] frame that looks like a packed feature: per-column scale, heavy tails, clipped."""
    rng = np.random.default_rng(seed)
    h, w = shape
    col_scale = rng.uniform(0.02, 0.3, size=(1, w))
    x = 0.5 + rng.standard_t(4, size=(h, w)) * col_scale * 0.3
    x[:, rng.integers(0, w, size=max(1, w // 50))] += 0.4  # a few "massive activation" channels
    return np.clip(x, 0.0, 1.0).astype(np.float32)


FRAMES = [packed_like((70, 128), 0), packed_like((130, 200), 1), packed_like((130, 200), 2),
          packed_like((70, 128), 3)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    logs: list[str] = []
    result = train(FRAMES, LAM, root / TASK, crop=(64, 64), batch=2, epochs=2, steps_per_epoch=2,
                      val_split=0.25, device="cpu", log=logs.append)
    return root, result, logs


@pytest.fixture(scope="module")
def codec(run):
    return HyperpriorCodec(run[0], threads=1)


def test_model_is_one_channel_scale_hyperprior():
    model = FeatureHyperprior()
    assert (model.N, model.M) == (128, 192)
    assert model.g_a[0].in_channels == 1 and model.g_a[0].out_channels == 128
    assert model.g_s[-1].in_channels == 128 and model.g_s[-1].out_channels == 1
    assert model.g_a[6].out_channels == 192
    again = FeatureHyperprior.from_state_dict(model.state_dict())
    assert (again.N, again.M, again.channels) == (128, 192, 1)
    assert fingerprint(again) == fingerprint(model)
    x = torch.rand(1, 1, 64, 128)
    assert model(x)["x_hat"].shape == x.shape


def test_training_writes_official_checkpoints(run):
    root, result, logs = run
    assert result.last.name == "hyperprior_lambda0.01_epoch2_lr0.0001_bs2_patch64-64_checkpoint.pth.tar"
    assert result.best.name.endswith("_checkpoint_best.pth.tar") and result.best.exists()
    ckpt = torch.load(result.last, map_location="cpu", weights_only=True)
    assert {"state_dict", "optimizer", "aux_optimizer", "lr_scheduler", "epoch", "loss"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and result.epochs_done == 2
    assert len(ckpt["aux_optimizer"]["param_groups"][0]["params"]) == 1  # only the quantiles
    assert all(np.isfinite(r["val_loss"]) for r in result.history)
    assert find_checkpoint(root, TASK, 0.01) == result.last
    assert find_checkpoint(root, TASK, float("1e-2"), best=True) == result.best


def test_resume_continues_and_matches_an_uninterrupted_run(run, tmp_path):
    root, result, _ = run
    work = tmp_path / "resumed"
    work.mkdir()
    for path in (result.last, result.best):
        (work / path.name).write_bytes(path.read_bytes())
    logs: list[str] = []
    resumed = train(FRAMES, LAM, work, crop=(64, 64), batch=2, epochs=3, steps_per_epoch=2,
                       val_split=0.25, device="cpu", log=logs.append)
    assert any("resumed" in line for line in logs)
    assert resumed.epochs_done == 3 and len(resumed.history) == 3
    assert sorted(p.name for p in work.iterdir()) == sorted([resumed.last.name, resumed.best.name])
    straight = train(FRAMES, LAM, tmp_path / "straight", crop=(64, 64), batch=2, epochs=3, steps_per_epoch=2,
                        val_split=0.25, device="cpu", log=None)
    assert resumed.history[-1]["val_loss"] == pytest.approx(straight.history[-1]["val_loss"], rel=1e-5)


def test_crop_is_reduced_to_fit_frames():
    notes: list[str] = []
    assert effective_crop(FRAMES, (256, 256), notes.append) == (64, 128)
    assert len(notes) == 2
    assert effective_crop([np.zeros((257, 1536))], (256, 256), notes.append) == (256, 256)
    assert effective_crop([np.zeros((40, 100))], (64, 64), notes.append) == (64, 64)  # padded frame


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip(codec, index):
    frame = FRAMES[index]
    stream = codec.encode(frame, LAM, TASK)
    assert stream == codec.encode(frame.copy(), LAM, TASK)  # deterministic
    head, offset = Header.unpack(stream)
    assert offset == header_size(TASK) == 39
    assert (head.task, head.lam, head.height, head.width) == (TASK, LAM, *frame.shape)
    assert head.z_shape == (-(-frame.shape[0] // 64), -(-frame.shape[1] // 64))
    assert 8 * len(stream) == 8 * (offset + head.len_y + head.len_z)
    decoded = HyperpriorCodec(codec.checkpoints).decode(stream)  # a fresh instance: bytes alone
    assert decoded.shape == frame.shape and decoded.dtype == np.float32
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    assert np.array_equal(decoded, codec.decode(stream))


@pytest.mark.slow
def test_fresh_process_decode_is_bit_identical(codec, run, tmp_path):
    """Same thread count (1): bit-identical in a fresh process. Another thread count (2):
    the entropy decoding is the same, the synthesis transform may differ by a few ulp."""
    expected = []
    for i, frame in enumerate(FRAMES[:2]):
        stream = codec.encode(frame, LAM, TASK)
        (tmp_path / f"{i}.bin").write_bytes(stream)
        expected.append(codec.decode(stream))
    script = textwrap.dedent(f"""
        import numpy as np
        from harness_plugins.hyperprior.codec import HyperpriorCodec
        for threads in (1, 2):
            codec = HyperpriorCodec({str(run[0])!r}, threads=threads)
            for i in range(2):
                stream = open({str(tmp_path)!r} + f"/{{i}}.bin", "rb").read()
                np.save({str(tmp_path)!r} + f"/{{i}}_t{{threads}}.npy", codec.decode(stream))
    """)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    for i, want in enumerate(expected):
        got = np.load(tmp_path / f"{i}_t1.npy")
        assert got.dtype == np.float32 and np.array_equal(got, want)
        other = np.load(tmp_path / f"{i}_t2.npy")
        assert np.abs(other - want).max() < 1e-5


def test_module_prefixed_and_bare_state_dicts_load(run, tmp_path):
    state = read_state_dict(run[1].last)
    reference = fingerprint(load_checkpoint(run[1].last))
    prefixed = {"module." + k: v for k, v in state.items()}
    torch.save({"state_dict": prefixed, "epoch": 0}, tmp_path / "wrapped.pth.tar")
    torch.save(prefixed, tmp_path / "bare.pth.tar")
    for name in ("wrapped.pth.tar", "bare.pth.tar"):
        model = load_checkpoint(tmp_path / name)
        assert fingerprint(model) == reference
        assert model.entropy_bottleneck._offset.numel() > 0  # update(force=True) built the CDFs


class NotTensor:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"state_dict": {}, "payload": NotTensor()}, tmp_path / "evil.pth.tar")
    with pytest.raises(HarnessError, match="weights-only"):
        load_checkpoint(tmp_path / "evil.pth.tar")


def test_missing_checkpoint_names_file_and_command(run):
    with pytest.raises(HarnessError) as info:
        find_checkpoint(run[0], "seg", 0.003)
    message = str(info.value)
    assert "hyperprior_lambda0.003_epoch{E}_lr{lr}_bs{B}_patch{H}-{W}_checkpoint.pth.tar" in message
    assert "harness train --codec hyperprior --task seg --lambda 0.003 --features DIR" in message
    with pytest.raises(HarnessError, match="harness train"):
        HyperpriorCodec(run[0]).encode(FRAMES[0], 0.003, "seg")


def test_other_model_or_damaged_stream_is_an_error(codec, run):
    stream = codec.encode(FRAMES[0], LAM, TASK)
    other = FeatureHyperprior()
    other.update(force=True)
    with pytest.raises(CodecError, match="fingerprint"):
        HyperpriorCodec(models={(TASK, LAM): other}).decode(stream)
    with pytest.raises(CodecError):
        codec.decode(stream[:-1])
    with pytest.raises(CodecError):
        codec.decode(b"XX" + stream[2:])


def test_a_header_declaring_a_huge_frame_is_refused_before_the_model_runs(codec, monkeypatch):
    z = -(-60000 // 64)
    head = Header(TASK, LAM, 0, 60000, 60000, (z, z), 4, 4)  # 3.6e9 samples, consistent z shape
    monkeypatch.setattr(codec, "model", lambda *a: pytest.fail("the model was asked to decode a 60000x60000 frame"))
    with pytest.raises(CodecError, match="declares a 60000x60000 frame"):
        codec.decode(head.pack() + bytes(8))


def test_plugin_spec_and_harness_conformance(run):
    from harness.testing import check_codec

    (spec,) = plugin.harness_codecs()
    assert (spec.name, spec.family, spec.input_kind, spec.rate_parameter) == (
        "hyperprior", "learned", "frame01", "lambda")
    assert spec.missing() is None
    with pytest.raises(CodecError, match="unknown option 'nope'"):
        spec.open({"nope": "1"})
    # one rate point we have a checkpoint for (stored under <root>/cls); CTC-shaped small frames
    report = check_codec(replace(spec, rate_points=(LAM,)), tasks=("cls",),
                         options={"checkpoints": str(run[0]), "threads": "1"})
    assert report.bits["cls"][0] > 0


@pytest.mark.slow
def test_train_run_verify_through_the_cli(tmp_path, capsys):
    """harness train on demo-like features, then harness run and verify with the checkpoint."""
    from harness.cli import main
    from harness.registry import default_registry
    from harness.sources import resolve_dataset
    from harness.ctc import load_ctc

    demo = resolve_dataset("demo", None, load_ctc(), default_registry(), progress=False).dataset
    features = demo.task_dir("tti") / "feature_test"
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--codec", "hyperprior", "--task", "tti", "--lambda", "0.2", "--features", str(features),
                 "--out", str(ckpt / "tti"), "--epochs", "1", "--batch", "2", "--crop", "64x64",
                 "--steps-per-epoch", "2"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and list((ckpt / "tti").glob("*_loss.png"))
    run = tmp_path / "run"
    assert main(["run", "--codec", "hyperprior", "--task", "tti", "--rate-points", "0.2", "--limit", "2",
                 "-o", f"checkpoints={ckpt}", "--out", str(run), "--jobs", "1", "--no-progress"]) == 0
    import pandas as pd
    table = pd.read_csv(run / "results.csv")
    assert len(table) == 2 and (table.status == "ok").all()
    for row in table.itertuples():
        assert row.bits == 8 * (run / row.bitstream_path).stat().st_size
    assert main(["verify", str(run)]) == 0  # fresh processes decode the same reconstruction
    meta = json.loads((run / "run.json").read_text())
    assert list(meta["run_key"]["model_fingerprints"]) == ["tti@0.2"]
    # one more epoch changes the checkpoint: the old run directory is not resumed with it
    assert main(["train", "--codec", "hyperprior", "--task", "tti", "--lambda", "0.2", "--features", str(features),
                 "--out", str(ckpt / "tti"), "--epochs", "2", "--batch", "2", "--crop", "64x64",
                 "--steps-per-epoch", "2"]) == 0
    for old in (ckpt / "tti").glob("*epoch1_*"):
        old.unlink()
    capsys.readouterr()
    assert main(["run", "--codec", "hyperprior", "--task", "tti", "--rate-points", "0.2", "--limit", "2",
                 "-o", f"checkpoints={ckpt}", "--out", str(run), "--jobs", "1", "--no-progress"]) == 1
    assert "model for tti@0.2 (e.g. a retrained checkpoint) changed" in capsys.readouterr().err


def test_train_needs_features_or_a_dataset_with_training_features(tmp_path, capsys):
    from harness.cli import main

    args = ["train", "--codec", "hyperprior", "--task", "cls", "--out", str(tmp_path / "ckpt")]
    assert main(args) == 1
    assert "--features DIR or as --dataset" in capsys.readouterr().err
    assert main([*args, "--dataset", "demo"]) == 1  # the demo has test features only
    err = capsys.readouterr().err
    assert "has no training features for cls" in err and "feature_train/train" in err
    assert not (tmp_path / "ckpt").exists()


def test_run_without_checkpoints_explains_how_to_make_them(tmp_path, capsys, monkeypatch):
    from harness.cli import main

    monkeypatch.delenv("FCM_HYPERPRIOR_CHECKPOINTS", raising=False)
    assert main(["run", "--codec", "hyperprior", "--task", "cls", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint directory given" in err and "harness train --codec hyperprior" in err


@pytest.mark.slow
def test_generalization_matrix(tmp_path, capsys):
    """Models trained on cls and on tti each code both tasks' features (paper Table 6)."""
    from harness.cli import main
    from harness.ctc import load_ctc
    from harness.registry import default_registry
    from harness.sources import resolve_dataset

    demo = resolve_dataset("demo", None, load_ctc(), default_registry(), progress=False).dataset
    ckpt = tmp_path / "ckpt"
    for task, lam in (("cls", "0.003"), ("tti", "0.02")):  # rate index 2 of each task's λ table
        features = demo.task_dir(task) / "feature_test"
        assert main(["train", "--codec", "hyperprior", "--task", task, "--lambda", lam, "--features",
                     str(features), "--out", str(ckpt / task), "--epochs", "1", "--batch", "2", "--crop", "64x64",
                     "--steps-per-epoch", "1"]) == 0
    out = tmp_path / "study"
    assert main(["generalization", "--codec", "hyperprior", "--task", "cls", "--task", "tti", "--limit", "2",
                 "-o", f"checkpoints={ckpt}", "--out", str(out)]) == 0
    import pandas as pd
    table = pd.read_csv(out / "generalization.csv")
    assert len(table) == 4 and set(zip(table.trained_on, table.tested_on)) == {
        ("cls", "cls"), ("cls", "tti"), ("tti", "cls"), ("tti", "tti")}
    assert (table.samples == 2).all() and (table.bpfp > 0).all() and table.value.notna().all()
    assert set(table.rate_point) == {0.003, 0.02}
    assert (out / "generalization.png").stat().st_size > 2000
