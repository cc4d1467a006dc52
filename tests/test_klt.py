"""The klt reference codec: integer tables, exact synthesis, training, conformance, CLI train/run/verify."""

from __future__ import annotations

from dataclasses import replace
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import harness_plugins.klt as plugin
from harness import CodecError, HarnessError
from harness.testing import SMALL_SHAPES, check_codec
from harness_plugins.klt import entropy
from harness_plugins.klt.codec import KltCodec, synthesize
from harness_plugins.klt.model import channel_axis_for, fit, load_model, model_paths, to_tokens, from_tokens
from harness_plugins.klt.training import train_transform

PACKING = {"cls": "dinov2", "seg": "dinov2", "dpt": "dinov2", "csr": "llama3", "tti": "sd3",
           "sal": "dinov2", "lm": "llama3"}


def correlated(shape, seed, dtype=np.float32, packing="dinov2"):
    """Features whose channels share a few latent factors (what a KLT compacts), plus outliers."""
    rng = np.random.default_rng(seed)
    axis = channel_axis_for(packing)
    d = shape[axis]
    tokens = int(np.prod(shape)) // d
    mixing = np.random.default_rng(99).standard_normal((4, d))
    x = rng.standard_normal((tokens, 4)) * [8, 4, 2, 1] @ mixing + 0.3 * rng.standard_normal((tokens, d))
    x[0, :2] += 40.0  # a massive activation
    n, c, h, w = shape
    if axis == 3:
        out = x.reshape(c, n, h, w).transpose(1, 0, 2, 3)
    else:
        out = x.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=dtype)


def fitted(tmp_path: Path, task: str, shape, count=6) -> Path:
    """A model for `task` in <tmp>/models/<task>, fitted like `harness train` does."""
    frames = [correlated(shape, seed, packing=PACKING[task]) for seed in range(count)]
    train_transform(frames, tmp_path / "models" / task, {"packing": PACKING[task]}, log=lambda s: None)
    return tmp_path / "models"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("klt")
    for task in ("cls", "csr", "tti", "dpt"):
        fitted(root, task, SMALL_SHAPES[task])
    return root / "models"


# ---------------------------------------------------------------- entropy coding


def test_tables_are_integer_normalized_and_pinned():
    for index in range(1, entropy.SCALES):
        edge, freqs = entropy.table(index)
        assert freqs.dtype == np.int64 and freqs.sum() == entropy.TOTAL and freqs.min() >= 1
        assert len(freqs) == 2 * edge + 1 and np.array_equal(freqs, freqs[::-1])
    # the tables come from integer arithmetic only: these numbers are the same on every machine
    assert entropy.theta_fixed(22) == 1779033703
    digest = hashlib.sha256(b"".join(entropy.table(i)[1].astype("<i8").tobytes() for i in (1, 22, 40, 63)))
    assert digest.hexdigest()[:16] == "cbc42025e1bc7172"


def test_columns_round_trip_with_escapes():
    rng = np.random.default_rng(1)
    columns = []
    for scale in (0.01, 0.7, 5.0, 300.0):
        q = np.rint(rng.laplace(0, scale, 500)).astype(np.int64)
        q[3], q[4] = 10**12, -(10**9)  # far beyond any table: Exp-Golomb escapes
        columns.append((q, entropy.choose_index(q)[0]))
    coder = entropy.Encoder()
    for q, index in columns:
        coder.column(q, index)
    payload = coder.finish()
    reader = entropy.Decoder(payload)
    for q, index in columns:
        assert np.array_equal(reader.column(len(q), index), q)
    reader.check_consumed()
    estimate = sum(entropy.code_length(q, i) for q, i in columns)
    assert abs(8 * len(payload) - estimate) < 0.02 * estimate + 64


# ---------------------------------------------------------------- transform and codec


def test_layouts_round_trip():
    x = np.arange(2 * 4 * 3 * 5, dtype=np.float32).reshape(2, 4, 3, 5)
    for axis, groups, width in ((3, 4, 5), (1, 1, 4)):
        tokens = to_tokens(x, axis)
        assert tokens.shape == (groups, x.size // (groups * width), width)
        assert np.array_equal(from_tokens(tokens, x.shape, axis), x)


def test_fit_finds_the_principal_directions():
    frames = [correlated((1, 1, 64, 16), s) for s in range(4)]
    model = fit(frames, 3, log=lambda s: None)
    variance = np.asarray(model.meta["variance"][0])
    assert model.basis.shape == (1, 16, 16) and np.all(np.diff(variance) <= 1e-9)
    assert variance[:4].sum() > 0.95 * variance.sum()  # four latent factors
    assert np.allclose(model.basis[0] @ model.basis[0].T, np.eye(16), atol=1e-5)


def test_round_trip_error_is_within_the_quantizer(models):
    codec = KltCodec(lambda task: load_model(models, task))
    x = correlated(SMALL_SHAPES["cls"], 42)
    sizes = []
    for step in (0.05, 0.5, 5.0):
        stream = codec.encode(x, step, "cls")
        codec.after_encode()
        y = KltCodec(lambda task: load_model(models, task)).decode(stream)
        assert y.shape == x.shape and y.dtype == np.float32
        # orthonormal transform: per token, error <= (step / 2) * sqrt(channels)
        err = np.sqrt(((y - x) ** 2).sum(axis=-1)).max()
        assert err <= step / 2 * np.sqrt(x.shape[-1]) * 1.001 + 1e-4
        sizes.append(len(stream))
    assert sizes[0] > sizes[1] > sizes[2]


def test_smooth_components_are_coded_as_differences(models):
    from harness_plugins.klt.codec import plan_column

    walk = np.cumsum(np.random.default_rng(8).integers(-1, 2, 400))
    index, delta, values = plan_column(walk + 50)
    assert delta and np.array_equal(np.cumsum(values), walk + 50)
    assert plan_column(np.random.default_rng(9).integers(-3, 4, 400))[1] is False  # white: coded as is
    x = correlated(SMALL_SHAPES["cls"], 10)
    x += np.linspace(-30, 30, x.shape[2], dtype=np.float32)[None, None, :, None]  # a slow drift over tokens
    codec = KltCodec(lambda task: load_model(models, task))
    stream = codec.encode(x, 0.1, "cls")
    codec.after_encode()
    assert np.abs(codec.decode(stream) - x).max() < 0.1 / 2 * np.sqrt(x.shape[-1])


def test_synthesis_is_exact_in_any_summation_order():
    rng = np.random.default_rng(3)
    q = np.rint(rng.laplace(0, 20, (50, 12))).astype(np.int64)
    basis = np.linalg.qr(rng.standard_normal((12, 12)))[0].astype(np.float32)
    mean = rng.standard_normal(12)
    from harness_plugins.klt.codec import exact_shift

    shift = exact_shift(q, 0.37 * basis.astype(np.float64))
    full = synthesize(q, basis, mean, 0.37, shift)
    order = rng.permutation(12)  # another order of the components: other partial sums, same result
    assert np.array_equal(full, synthesize(q[:, order], basis[order], mean, 0.37, shift))
    assert shift > 30


def test_float16_sd3_and_grouped_features(models):
    codec = KltCodec(lambda task: load_model(models, task))
    tti = correlated(SMALL_SHAPES["tti"], 5, dtype=np.float16, packing="sd3")
    assert codec.decode(codec.encode(tti, 0.2, "tti")).dtype == np.float16
    dpt = correlated(SMALL_SHAPES["dpt"], 6)
    assert load_model(models, "dpt").groups == 4  # one transform per ViT layer
    assert np.abs(codec.decode(codec.encode(dpt, 0.5, "dpt")) - dpt).max() < 2.0


def test_other_model_damaged_or_foreign_stream_is_an_error(models, tmp_path):
    codec = KltCodec(lambda task: load_model(models, task))
    stream = codec.encode(correlated(SMALL_SHAPES["cls"], 7), 0.5, "cls")
    other = fitted(tmp_path, "cls", SMALL_SHAPES["cls"], count=3)
    with pytest.raises(CodecError, match="fingerprint"):
        KltCodec(lambda task: load_model(other, task)).decode(stream)
    for cut in (stream[:-1], stream[:5], stream[:12]):  # inside the payload's last word, or the header
        with pytest.raises(CodecError):
            codec.decode(cut)
    with pytest.raises(CodecError, match="not a klt"):
        codec.decode(b"XX" + stream[2:])
    with pytest.raises(CodecError, match="channels"):
        codec.encode(correlated((1, 1, 17, 32), 1), 0.5, "cls")


def test_missing_model_file_names_the_file_and_the_train_command(models, tmp_path):
    with pytest.raises(HarnessError) as info:
        model_paths(tmp_path / "none", "sal")
    message = str(info.value)
    assert str(tmp_path / "none" / "sal" / "klt_mean.npy") in message
    assert "harness train --codec klt --task sal" in message and "\n" not in message
    (models / "csr" / "klt_basis.npy").rename(models / "csr" / "moved.npy")
    try:
        with pytest.raises(HarnessError, match="klt_basis.npy: klt model file not found"):
            plugin.model_files({"models": str(models)}, "csr", 1.0)
    finally:
        (models / "csr" / "moved.npy").rename(models / "csr" / "klt_basis.npy")


def test_plugin_conformance(models):
    (spec,) = plugin.harness_codecs()
    assert (spec.name, spec.family, spec.input_kind, spec.rate_parameter) == ("klt", None, "feature", "step")
    assert spec.missing() is None
    with pytest.raises(CodecError, match="unknown option 'nope'"):
        spec.open({"nope": "1"})
    small = replace(spec, rate_points={t: (0.05, 0.5, 5.0) for t in ("cls", "csr", "tti", "dpt")})
    report = check_codec(small, tasks=("cls", "csr", "tti", "dpt"), options={"models": str(models)})
    assert all(bits[0] > bits[-1] > 0 for bits in report.bits.values())


def test_training_is_skipped_when_up_to_date(tmp_path):
    class Frames(list):  # like the harness's FeatureFrames: a sequence with the files' paths
        paths: list[Path]

    folder = tmp_path / "train"
    folder.mkdir()
    frames = Frames()
    frames.paths = []
    for seed in range(3):
        path = folder / f"f{seed}.npy"
        np.save(path, correlated((1, 1, 20, 8), seed), allow_pickle=False)
        frames.append(np.load(path))
        frames.paths.append(path)
    logs: list[str] = []
    for _ in range(2):
        outcome = train_transform(frames, tmp_path / "m", {"packing": "llama3"}, log=logs.append)
    assert outcome["checkpoint"] == tmp_path / "m" / "klt.json"
    assert sum("up to date" in line for line in logs) == 1
    meta = json.loads((tmp_path / "m" / "klt.json").read_text())
    assert meta["channel_axis"] == 3 and meta["features"] == 3
    assert json.loads((tmp_path / "m" / "klt_training.json").read_text())["features"] == 3
    # retraining the same features makes the same model files: the runs' key does not change
    files = plugin.model_files({"models": str(tmp_path)}, "m", 1.0)
    before = [p.read_bytes() for p in files]
    (tmp_path / "m" / "klt_training.json").unlink()
    train_transform(frames, tmp_path / "m", {"packing": "llama3"}, log=logs.append)
    assert [p.read_bytes() for p in files] == before


# ---------------------------------------------------------------- fitted in a distortion metric (tail)


def test_metric_fit_round_trips_and_lowers_the_weighted_error(tmp_path):
    frames = [correlated((1, 1, 64, 16), s, packing="llama3") for s in range(4)]
    weights = np.ones(16)
    weights[:4] = 30.0  # the first four channels matter most
    metric = np.diag(weights)
    model = fit(frames, 3, log=lambda s: None, metric=metric)
    assert np.allclose(model.synthesis[0].T @ model.basis[0], np.eye(16), atol=1e-4)  # inverse pair
    model.save(tmp_path / "m" / "lm")
    assert [p.name for p in model_paths(tmp_path / "m", "lm")][-1] == "klt_synthesis.npy"
    weighted = {}
    for name, folder in (("metric", tmp_path / "m"), ("plain", fitted(tmp_path, "lm", (1, 1, 64, 16), count=4))):
        codec = KltCodec(lambda task, folder=folder: load_model(folder, task))
        x = correlated((1, 1, 64, 16), 9, packing="llama3")
        stream = codec.encode(x, 1.0, "lm")
        error = (codec.decode(stream) - x).reshape(-1, 16).astype(np.float64)
        weighted[name] = (float(np.sum((error @ metric) * error)), len(stream))
    (metric_err, metric_len), (plain_err, plain_len) = weighted["metric"], weighted["plain"]
    assert metric_err * plain_len < plain_err * metric_len  # less weighted error per byte


def test_margin_metric_of_a_linear_head():
    torch = pytest.importorskip("torch")
    from harness_plugins.klt.tail import margin_metric

    rng = np.random.default_rng(4)
    weight = rng.standard_normal((7, 5))
    head = torch.nn.Linear(5, 7, bias=False).requires_grad_(False)
    head.weight.copy_(torch.from_numpy(weight))
    tokens = rng.standard_normal((40, 5)).astype(np.float32)
    metric = margin_metric(head, [tokens[:25], tokens[25:]], batch=8)
    logits = tokens.astype(np.float64) @ weight.T
    top = np.argsort(-logits, axis=1)[:, :2]
    grads = weight[top[:, 0]] - weight[top[:, 1]]  # d(l1 - l2)/dx of a linear head
    margins = np.maximum(np.take_along_axis(logits, top, 1) @ [1.0, -1.0], 0.1)
    assert np.allclose(metric, (grads / margins[:, None]).T @ grads / 40, rtol=1e-4, atol=1e-6)


def test_unknown_tail_is_named_with_the_available_ones(tmp_path):
    frames = [correlated((1, 1, 20, 8), 0, packing="llama3")]
    with pytest.raises(HarnessError, match="unknown tail 'nope'; available: mini-lm"):
        train_transform(frames, tmp_path / "m", {"packing": "llama3", "tail": "nope"}, log=lambda s: None)
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- through the CLI


def mini_root(root: Path, ids=("a", "b"), train=4) -> Path:
    """A tiny data root for the mini CTC's sal task (real shapes, synthetic values)."""
    task_dir = root / "dinov2s" / "sal"
    (task_dir / "source").mkdir(parents=True)
    (task_dir / "source" / "images.txt").write_text("\n".join(ids) + "\n")
    for i, sample in enumerate(ids):
        path = task_dir / "feature_test" / f"{sample}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, correlated((1, 1, 257, 384), 100 + i), allow_pickle=False)
    for i in range(train):
        path = task_dir / "feature_train" / "train" / f"t{i}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, correlated((1, 1, 257, 384), i), allow_pickle=False)
    return root


@pytest.mark.slow  # harness verify starts a fresh Python per bitstream
def test_train_run_verify_through_the_cli(tmp_path, capsys):
    from harness.cli import main
    import pandas as pd

    root = mini_root(tmp_path / "data")
    models = tmp_path / "models"
    assert main(["train", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
                 "--lambda", "4,16", "--out", str(models / "sal")]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and (models / "sal" / "klt_history.json").is_file()
    run = tmp_path / "run"
    args = ["run", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
            "--rate-points", "4,16", "--limit", "1", "-o", f"models={models}", "--out", str(run), "--jobs", "1",
            "--no-progress", "--no-eval"]
    assert main(args) == 0
    table = pd.read_csv(run / "results.csv")
    assert len(table) == 2 and (table.status == "ok").all()
    for row in table.itertuples():
        assert row.bits == 8 * (run / row.bitstream_path).stat().st_size  # the harness counts every byte
    assert main(["verify", str(run)]) == 0  # fresh processes decode the same reconstructions
    meta = json.loads((run / "run.json").read_text())
    assert sorted(meta["run_key"]["model_fingerprints"]) == ["sal@16", "sal@4"]


def test_train_passes_codec_settings_from_the_command_line(tmp_path, capsys):
    from harness.cli import main

    root = mini_root(tmp_path / "data", train=2)
    assert main(["train", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
                 "--out", str(tmp_path / "m"), "-o", "tail=nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: klt: unknown tail 'nope'") and "\n" not in err


def test_run_without_a_model_is_one_line_naming_the_file(tmp_path, capsys):
    from harness.cli import main

    root = mini_root(tmp_path / "data", train=0)
    assert main(["run", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
                 "-o", f"models={tmp_path / 'none'}", "--out", str(tmp_path / "run"), "--no-eval"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "klt_mean.npy" in err and "harness train --codec klt --task sal" in err
