"""Task heads: official weight files load into our heads; missing weights fail fast; demo end to end."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from harness import HeadContext
from harness.ctc import load_ctc
from harness.dataset import Dataset
from harness_plugins.heads import tasks
from harness_plugins.heads.dinov2 import crop_boxes, resized_size


def official_context(tmp_path, synthetic=True):
    ctc = load_ctc()
    return HeadContext(ctc, Dataset(tmp_path, ctc), synthetic, tmp_path, "official")


def test_official_dinov2_head_files_load(tmp_path):
    """State dicts in the released layouts: flat {weight, bias}; {'state_dict': {'decode_head.*'}}."""
    g = torch.Generator().manual_seed(0)
    norm = {"norm.weight": torch.rand(1536, generator=g), "norm.bias": torch.rand(1536, generator=g),
            "blocks.0.attn.qkv.weight": torch.zeros(3, 3)}  # the backbone file has much more; only norm is read
    torch.save(norm, tmp_path / "dinov2_vitg14_pretrain.pth")
    linear = {"weight": torch.randn(1000, 3072, generator=g), "bias": torch.randn(1000, generator=g)}
    torch.save(linear, tmp_path / "dinov2_vitg14_linear_head.pth")
    seg = {"meta": {"epoch": 1}, "state_dict": {
        "decode_head.conv_seg.weight": torch.randn(21, 1536, 1, 1, generator=g), "decode_head.conv_seg.bias": torch.randn(21),
        "decode_head.bn.weight": torch.rand(1536), "decode_head.bn.bias": torch.rand(1536),
        "decode_head.bn.running_mean": torch.rand(1536), "decode_head.bn.running_var": torch.rand(1536) + 0.5,
        "decode_head.bn.num_batches_tracked": torch.tensor(7)}}
    torch.save(seg, tmp_path / "dinov2_vitg14_voc2012_linear_head.pth")
    dpt = {"state_dict": {"decode_head.conv_depth.weight": torch.randn(256, 12288, 1, 1, generator=g) * 0.01,
                          "decode_head.conv_depth.bias": torch.randn(256)}}
    torch.save(dpt, tmp_path / "dinov2_vitg14_nyu_linear4_head.pth")
    context = official_context(tmp_path)
    cls = tasks.Cls(context)
    assert torch.equal(cls.head.norm.weight, norm["norm.weight"]) and torch.equal(cls.head.linear.weight, linear["weight"])
    feature = np.random.default_rng(0).standard_normal((1, 1, 257, 1536)).astype(np.float32)
    x = torch.nn.functional.layer_norm(torch.from_numpy(feature[0]), (1536,), norm["norm.weight"], norm["norm.bias"], 1e-6)
    expected = (torch.cat([x[:, 0], x[:, 1:].mean(1)], 1) @ linear["weight"].T + linear["bias"]).argmax()
    assert cls.predict("a", feature)[0] == int(expected)
    segment = tasks.Seg(context)
    assert torch.equal(segment.head.bn.running_var, seg["state_dict"]["decode_head.bn.running_var"])
    depth = tasks.Dpt(context)
    assert torch.equal(depth.head.conv_depth.bias, dpt["state_dict"]["decode_head.conv_depth.bias"])
    (tmp_path / "dinov2_vitg14_linear_head.pth").write_bytes(b"junk")
    with pytest.raises(Exception, match="dinov2_vitg14_linear_head.pth: not a weights-only torch file"):
        tasks.Cls(context)


def test_seg_crop_geometry_matches_the_official_sliding_window():
    assert resized_size(375, 500) == (512, 683)
    assert crop_boxes(512, 683) == [(0, 512, 0, 512), (0, 512, 171, 683)]
    assert len(crop_boxes(512, 512)) == 1 and len(crop_boxes(512, 1194)) == 3


def test_depth_head_conv_before_resize_equals_resize_before_conv():
    head = tasks.seeded(tasks.DepthHead(8), 3)
    layers = torch.randn(4, 1 + 5 * 6, 8)
    parts = []
    for tokens in layers:
        p = tokens[1:].reshape(1, 5, 6, -1).permute(0, 3, 1, 2)
        parts += [p, tokens[0][None, :, None, None].expand_as(p)]
    x = torch.nn.functional.interpolate(torch.cat(parts, 1), scale_factor=4, mode="bilinear", align_corners=False)
    official = head.conv_depth(x)
    ours = torch.nn.functional.interpolate(head.conv_depth(torch.cat(parts, 1)), scale_factor=4, mode="bilinear",
                                           align_corners=False)
    assert torch.allclose(official, ours, atol=1e-5)
    # the head's own forward: the official order (resize, conv, bins, clamp, resize to the output)
    weights = torch.relu(official) + 0.1
    weights = weights / weights.sum(dim=1, keepdim=True)
    depth = torch.einsum("ikmn,k->imn", weights, head.bins).unsqueeze(1).clamp(head.min_depth, head.max_depth)
    expected = torch.nn.functional.interpolate(depth, size=(30, 36), mode="bilinear", align_corners=False)
    got = head(layers, grid=(5, 6), out=(30, 36))
    assert got.shape == (1, 1, 30, 36) and torch.allclose(got, expected, atol=1e-5)
    assert got.std() > 0  # not a constant map


@pytest.mark.slow
def test_missing_weights_fail_fast_naming_every_file(tmp_path, capsys):
    from harness.cli import main

    run = tmp_path / "run"
    assert main(["run", "--codec", "zlib", "--task", "cls", "--task", "dpt", "--limit", "1", "--rate-points", "4",
                 "--out", str(run), "--no-eval", "--no-progress"]) == 0
    capsys.readouterr()
    start = time.perf_counter()
    assert main(["evaluate", str(run), "--heads", "official", "--weights", str(tmp_path / "w")]) == 1
    assert time.perf_counter() - start < 1.0
    err = capsys.readouterr().err
    for name in ("dinov2_vitg14_pretrain.pth", "dinov2_vitg14_linear_head.pth", "dinov2_vitg14_nyu_linear4_head.pth"):
        assert name in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_fidelity_is_perfect_on_originals_and_degrades_with_vvc(tmp_path, capsys):
    from harness.cli import main
    from harness_plugins.vvc import availability

    if availability():
        pytest.skip(availability())
    run = tmp_path / "run"
    assert main(["run", "--codec", "vvc", "--task", "cls", "--task", "tti", "--task", "csr", "--limit", "3",
                 "--out", str(run), "--no-progress"]) == 0
    metrics = pd.read_csv(run / "metrics.csv", dtype={"rate_point": str})
    orig = metrics[metrics.rate_point == "orig"].set_index("task").value
    assert orig["cls"] == 100 and orig["csr"] == 100 and orig["tti"] == 0
    assert set(metrics["mode"]) == {"fidelity"}
    tti = metrics[(metrics.task == "tti") & (metrics.rate_point != "orig")]
    assert tti.set_index("rate_point").value["42"] > tti.set_index("rate_point").value["22"] > 0
    # a second evaluation reuses the cached predictions (none rewritten) and gives the same table
    cached = {p: p.stat().st_mtime_ns for p in (run / "predictions").rglob("*.npy")}
    assert cached and all("demo-paper-" in str(p) for p in cached)  # keyed by the heads that made them
    assert main(["evaluate", str(run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (run / "predictions").rglob("*.npy")} == cached
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv", dtype={"rate_point": str}), metrics)
    # the report now shows rate-accuracy curves
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "figures" / "cls-ra.png").exists()


def test_official_llama_head_reads_only_norm_and_lm_head(tmp_path):
    """A Hugging Face Llama folder (safetensors + tokenizer): the head's next token equals the full model's."""
    from test_extract import _tiny_llama
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = tmp_path / "Meta-Llama-3-8B-Instruct"
    _tiny_llama(folder, {"The", "best", "answer", "is", "A", "B", "C", "D"})
    context = official_context(tmp_path)
    csr = tasks.Csr(context)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    ids = AutoTokenizer.from_pretrained(folder)("The best answer is", return_tensors="pt")
    hooked = []
    model.model.layers[-1].register_forward_hook(lambda m, i, o: hooked.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        logits = model(**ids).logits.float()
    feature = hooked[0].numpy()[None]
    assert torch.equal(csr.head.lm_head.weight, model.lm_head.weight.to(torch.bfloat16))  # the official dtype
    # bf16 like the official injection: the same greedy token as the full float32 model here
    assert csr.predict("q", feature)[0] == int(logits[0, -1].argmax())
    assert csr.ground_truth(["q"]) is None  # synthetic context: fidelity mode


def test_official_tti_files_are_checked(tmp_path):
    from harness_plugins.heads.sd3 import tiny_vae

    tiny_vae().save_pretrained(tmp_path / "stable-diffusion-3-medium-diffusers" / "vae")
    (tmp_path / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"not the inception weights")
    with pytest.raises(Exception, match="is not the expected Inception weights"):
        tasks.Tti(official_context(tmp_path))


def test_a_head_scoring_another_metric_than_the_ctc_is_one_error_naming_the_file(tmp_path, monkeypatch):
    import harness.registry
    from harness.errors import HarnessError
    from harness.evaluate import EvaluationRequest, evaluate_run
    from harness.runner import RunRequest, execute

    run = execute(RunRequest(codec="zlib", tasks=["cls"], limit=1, rate_points=[4], out=tmp_path / "run",
                             jobs=1, progress=False)).run_dir
    monkeypatch.setenv("FCM_HARNESS_PLUGINS", "plugins_for_tests.wrong_metric_head")
    monkeypatch.setattr(harness.registry, "_default", None)
    with pytest.raises(HarnessError, match=r"task head 'wrong-cls' .* scores 'top5_accuracy', but .*tasks.toml "
                                           r"\[tasks.cls\] says metric = 'top1_accuracy'"):
        evaluate_run(EvaluationRequest(run, heads={"cls": "wrong-cls"}, progress=False))
