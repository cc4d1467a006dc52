"""Feature extraction with forward hooks on tiny real model classes; the split is exact."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
import pytest
import torch

from harness.cli import main
from harness_plugins.heads.extract import arc_prompt


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=8, num_hidden_layers=40, num_attention_heads=2, mlp_ratio=2, image_size=518,
                          patch_size=14, layer_norm_eps=1e-6)
    folder = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(config).save_pretrained(folder)
    return folder


def _image(path, size, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def test_dinov2_tasks_in_the_official_layout(tmp_path, tiny_dinov2, capsys):
    src = tmp_path / "src"
    (src / "dinov2/cls/source").mkdir(parents=True)
    (src / "dinov2/cls/source/imagenet_selected_label2.txt").write_text("img_1 3\nimg_2 7")
    (src / "ImageNet_Selected/n01").mkdir(parents=True)
    _image(src / "ImageNet_Selected/n01/img_1.JPEG", (300, 400), 1)
    _image(src / "ImageNet_Selected/n01/img_2.JPEG", (256, 256), 2)
    (src / "dinov2/seg/source").mkdir(parents=True)
    (src / "dinov2/seg/source/val_1.txt").write_text("2007_000001\r\n")
    (src / "VOC2012/JPEGImages").mkdir(parents=True)
    _image(src / "VOC2012/JPEGImages/2007_000001.jpg", (375, 500), 3)  # -> 512x683: two crops
    (src / "dinov2/dpt/source/NYU_Test1/bath").mkdir(parents=True)
    (src / "dinov2/dpt/source/NYU_Test1/nyu_test.txt").write_text("bath/rgb_00001.jpg bath/sync_depth_00001.png 518.8579")
    _image(src / "dinov2/dpt/source/NYU_Test1/bath/rgb_00001.jpg", (480, 640), 4)
    out = tmp_path / "data"
    for task in ("cls", "seg", "dpt"):
        assert main(["extract", "--task", task, "--source", str(src), "--out", str(out), "--model", str(tiny_dinov2)]) == 0
    assert np.load(out / "dinov2/cls/feature_test/img_1.npy").shape == (1, 1, 257, 8)
    assert np.load(out / "dinov2/seg/feature_test/2007_000001.npy").shape == (2, 1, 1370, 8)
    dpt = np.load(out / "dinov2/dpt/feature_test/bath_rgb_00001.npy")
    assert dpt.shape == (2, 4, 1611, 8) and dpt.dtype == np.float32
    assert (out / "dinov2/cls/source/imagenet_selected_label2.txt").exists()

    # the split is exact: the final LayerNorm on the stored block-40 output is the model's own output
    from transformers import Dinov2Model
    from harness_plugins.heads.extract import cls_pixels, dinov2_cls
    model = Dinov2Model.from_pretrained(tiny_dinov2).eval()
    with Image.open(src / "ImageNet_Selected/n01/img_1.JPEG") as image:
        feature = dinov2_cls(model, image)
        with torch.no_grad():
            full = model(pixel_values=cls_pixels(image)).last_hidden_state
    assert torch.allclose(model.layernorm(torch.from_numpy(feature[0])), full, atol=1e-5)


def _tiny_llama(folder, words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, **{w: i + 2 for i, w in enumerate(sorted(words))}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)


def test_csr_prompt_split_and_selection(tmp_path):
    items = [{"id": f"Q{i}", "question": {"stem": "Which is " + "big " * i + "?",
                                          "choices": [{"text": t, "label": l} for t, l in zip("wxyz", "ABCD")]},
              "answerKey": "ABCD"[i % 4]} for i in range(4)]
    prompt = arc_prompt(items[1])
    assert prompt.startswith("<|start_header_id|>user<|end_header_id|>\n\nGiven the following question")
    assert "Question: Which is big ?\nA: w\nB: x\nC: y\nD: z\nYour response should end with" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nThe best answer is")
    words = {w for item in items for w in (arc_prompt(item).replace("|", " ").split())} | set("ABCD")
    model_dir = tmp_path / "llama"
    _tiny_llama(model_dir, {t for w in words for t in __import__("re").findall(r"\w+|[^\w\s]", w)})
    src = tmp_path / "src" / "llama3" / "csr" / "source"
    src.mkdir(parents=True)
    (src / "sampled_longest4.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    out = tmp_path / "data"
    assert main(["extract", "--task", "csr", "--source", str(tmp_path / "src"), "--out", str(out),
                 "--model", str(model_dir)]) == 0
    from transformers import AutoTokenizer, LlamaForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(arc_prompt(items[2]), return_tensors="pt")
    feature = np.load(out / "llama3/csr/feature_test/Q2.npy")
    assert feature.shape == (1, 1, ids.input_ids.shape[1], 64) and ids.input_ids[0, 0] == 1  # BOS first
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    logits = model(**ids).logits
    from_feature = model.lm_head(model.model.norm(torch.from_numpy(feature[0])))
    assert torch.allclose(from_feature, logits, atol=1e-4)  # the split is exact


def test_csr_keep_correct_keeps_right_answers_longest_first(tmp_path):
    items = [{"id": f"Q{i}", "question": {"stem": "Pick " + "one " * i,
                                          "choices": [{"text": t, "label": l} for t, l in zip("wxyz", "ABCD")]},
              "answerKey": "A"} for i in range(8)]
    words = {t for item in items for t in __import__("re").findall(r"\w+|[^\w\s]", arc_prompt(item))} | set("ABCD")
    model_dir = tmp_path / "llama"
    _tiny_llama(model_dir, words)
    from transformers import AutoTokenizer, LlamaForCausalLM
    from harness_plugins.heads.extract import LlamaSplit, extract
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), LlamaForCausalLM.from_pretrained(model_dir)
    letters = tokenizer.convert_tokens_to_ids(list("ABCD"))
    with torch.no_grad():  # the tiny model only ever says a letter: some answers are right, some wrong
        keep_rows = torch.zeros_like(model.lm_head.weight)
        keep_rows[letters] = model.lm_head.weight[letters]
        model.lm_head.weight.copy_(keep_rows)
    model.save_pretrained(model_dir)
    split = LlamaSplit(model, tokenizer)
    said = {item["id"]: split(arc_prompt(item)) for item in items}
    for i, item in enumerate(items):  # even items right, odd ones wrong
        answer = said[item["id"]][1]
        item["answerKey"] = answer if i % 2 == 0 else "ABCD"[("ABCD".index(answer) + 1) % 4]
    src = tmp_path / "src" / "llama3" / "csr" / "source"
    src.mkdir(parents=True)
    (src / "sampled_longest8.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    kept = extract("csr", tmp_path / "src", tmp_path / "data", model_dir, keep_correct=True)
    assert kept == ["Q6", "Q4", "Q2", "Q0"]  # the right ones, longest prompts first
    listed = (tmp_path / "data/llama3/csr/source/sampled_longest4.jsonl").read_text().split("\n")
    assert [json.loads(line)["id"] for line in listed if line] == kept
    # --keep N: the N longest right ones, and only their features
    two = extract("csr", tmp_path / "src", tmp_path / "two", model_dir, keep_correct=True, keep=2)
    assert two == kept[:2]
    assert sorted(p.stem for p in (tmp_path / "two/llama3/csr/feature_test").glob("*.npy")) == sorted(two)
    assert [p.name for p in (tmp_path / "two/llama3/csr/source").iterdir()] == ["sampled_longest2.jsonl"]


def test_cls_keep_correct_keeps_the_first_images_the_head_classifies_right(tmp_path, tiny_dinov2):
    from transformers import Dinov2Model

    from harness_plugins.heads.dinov2 import ClsHead
    from harness_plugins.heads.extract import dinov2_cls, extract

    src = tmp_path / "src"
    (src / "dinov2/cls/source").mkdir(parents=True)
    for i in range(4):
        _image(src / f"img_{i}.JPEG", (256, 300), 10 + i)
    torch.manual_seed(1)
    linear = torch.nn.Linear(16, 5)
    torch.save({"weight": linear.weight.detach(), "bias": linear.bias.detach()}, tmp_path / "dinov2_vitg14_linear_head.pth")
    model = Dinov2Model.from_pretrained(tiny_dinov2).eval()
    head = ClsHead(8, 5)
    head.norm.load_state_dict(model.layernorm.state_dict())
    head.linear = linear
    predicted = []
    for i in range(4):
        with Image.open(src / f"img_{i}.JPEG") as image, torch.no_grad():
            predicted.append(int(head(torch.from_numpy(dinov2_cls(model, image)[0])).argmax()))
    labels = [predicted[0], (predicted[1] + 1) % 5, predicted[2], predicted[3]]  # img_1 is misclassified
    (src / "dinov2/cls/source/imagenet_selected_label4.txt").write_text(
        "\n".join(f"img_{i} {label}" for i, label in enumerate(labels)))
    kept = extract("cls", src, tmp_path / "all", tiny_dinov2, keep_correct=True, weights=tmp_path)
    assert kept == ["img_0", "img_2", "img_3"]
    assert main(["extract", "--task", "cls", "--source", str(src), "--out", str(tmp_path / "two"), "--model",
                 str(tiny_dinov2), "--keep-correct", "--keep", "2", "--weights", str(tmp_path)]) == 0
    listed = (tmp_path / "two/dinov2/cls/source/imagenet_selected_label2.txt").read_text().split()
    assert listed == ["img_0", str(labels[0]), "img_2", str(labels[2])]  # the first two right, in list order
    assert sorted(p.stem for p in (tmp_path / "two/dinov2/cls/feature_test").glob("*.npy")) == ["img_0", "img_2"]
    assert main(["extract", "--task", "cls", "--source", str(src), "--out", str(tmp_path / "x"), "--model",
                 str(tiny_dinov2), "--keep-correct"]) == 1  # the head's weights are needed to judge


def test_tti_list_from_coco_captions_first_images_longest_caption(tmp_path, capsys):
    from harness_plugins.heads.extract import coco_caption_lines

    coco = {"images": [{"id": 397133}, {"id": 5}, {"id": 37777}, {"id": 252219}],
            "annotations": [{"image_id": 37777, "caption": "A table."},
                            {"image_id": 397133, "caption": "A man in a kitchen."},
                            {"image_id": 397133, "caption": "A table with pies being made.\n"},
                            {"image_id": 37777, "caption": "The dining table near the kitchen."},
                            {"image_id": 252219, "caption": "a homeless man"}]}
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.parent.mkdir()
    path.write_text(json.dumps(coco))
    assert coco_caption_lines(path, 2) == [  # image 5 has no caption: skipped
        "COCO_val2017_000000397133.jpg A table with pies being made.",
        "COCO_val2017_000000037777.jpg The dining table near the kitchen."]
    assert len(coco_caption_lines(path, 10)) == 3
    assert main(["extract", "--task", "tti", "--source", str(tmp_path / "annotations"), "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path / "no-model")]) == 1
    assert "give --keep N" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(Exception, match="bad.json: not a COCO captions file"):
        coco_caption_lines(tmp_path / "bad.json", 1)


def test_tti_latents_from_a_tiny_sd3_pipeline(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast, T5Config, T5EncoderModel

    from harness_plugins.heads.sd3 import tiny_vae

    def tokenizer():
        vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate("a cat dog on the".split())}}
        core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                       eos_token="</s>", model_max_length=77)

    torch.manual_seed(0)
    clip = CLIPTextConfig(vocab_size=20, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                          num_hidden_layers=2, projection_dim=32, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, num_layers=1,
                                          attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                          joint_attention_dim=32, pooled_projection_dim=64, out_channels=16),
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(),
        text_encoder=CLIPTextModelWithProjection(clip), tokenizer=tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(clip), tokenizer_2=tokenizer(),
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=20, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)),
        tokenizer_3=tokenizer())
    pipe.save_pretrained(tmp_path / "sd3")
    src = tmp_path / "src" / "sd3" / "tti" / "source"
    src.mkdir(parents=True)
    (src / "captions_val2017_select3.txt").write_text(
        "COCO_val2017_000000000001.jpg a cat on the dog\nCOCO_val2017_000000000002.jpg a dog\n"
        "COCO_val2017_000000000003.jpg the cat")
    for out in (tmp_path / "a", tmp_path / "b"):
        assert main(["extract", "--task", "tti", "--source", str(tmp_path / "src"), "--out", str(out),
                     "--model", str(tmp_path / "sd3"), "--steps", "2", "--size", "64"]) == 0
    # from COCO's caption annotations: the list is made (first images, longest caption), then extracted
    coco = {"images": [{"id": 2}, {"id": 1}], "annotations": [{"image_id": 1, "caption": "a cat"},
                                                              {"image_id": 2, "caption": "a dog on the cat"}]}
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "captions_val2017.json").write_text(json.dumps(coco))
    assert main(["extract", "--task", "tti", "--source", str(tmp_path / "coco"), "--out", str(tmp_path / "c"),
                 "--model", str(tmp_path / "sd3"), "--steps", "2", "--size", "64", "--keep", "1"]) == 0
    assert (tmp_path / "c/sd3/tti/source/captions_val2017_select1.txt").read_text() == \
        "COCO_val2017_000000000002.jpg a dog on the cat\n"
    assert [p.name for p in (tmp_path / "c/sd3/tti/feature_test").iterdir()] == ["COCO_val2017_000000000002.npy"]
    latent = np.load(tmp_path / "a/sd3/tti/feature_test/COCO_val2017_000000000002.npy")
    assert latent.shape == (1, 16, 32, 32) and latent.dtype == np.float16
    again = np.load(tmp_path / "b/sd3/tti/feature_test/COCO_val2017_000000000002.npy")
    assert np.array_equal(latent, again)  # seeded: the same latents every time
