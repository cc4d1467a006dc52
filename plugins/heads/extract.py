"""Feature extraction at the CTC split points, with forward hooks on unmodified model classes.

Builds a dataset in the official layout (<out>/<model>/<task>/feature_test/<id>.npy
plus the sample list under source/) from source data and local model folders
(Hugging Face layout; nothing is downloaded):
- cls: DINOv2 block 40 output (before the final LayerNorm), 224x224 centre crop -> (1, 1, 257, D)
- seg: block 40 per 512x512 sliding crop (stride 341) padded to 518 -> (n, 1, 1370, D)
- dpt: blocks 10/20/30/40, 480x640 padded to 490x644, original and mirrored -> (2, 4, 1611, D)
- csr: Llama-3 last decoder layer output (before the final RMSNorm) on the paper's prompt -> (1, 1, T, H),
  optionally keeping only the items the model answers right, longest prompts first (the paper's rule)
- tti: SD3's final denoised latent (output_type="latent", before 1/scaling + shift) -> (1, 16, 128, 128)
  float16; seed 3407 set once, prompts in batches of 16, empty negative prompt, 28 steps, guidance 7,
  1024x1024 (official sd3.py); float16 on a GPU, float32 on the CPU
Image resizing uses PIL, not mmcv/cv2, so features are close to, not bit-identical with, the released ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import json
from pathlib import Path
import re
import shutil

import numpy as np
from PIL import Image
import torch

from harness import HarnessError, load_ctc, parse_sample_list
from harness_plugins.heads.dinov2 import crop_boxes, resized_size

IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
MMSEG_MEAN, MMSEG_STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
DPT_BLOCKS, LAST_BLOCK = (9, 19, 29, 39), 39
ANSWER_PREFIX = "The best answer is"
COCO_CAPTIONS = "captions_val2017.json"


def arc_question(item: dict) -> str:
    """The csr instruction, question and four options of the official llama3.py, byte for byte
    (letters A-D whatever the labels)."""
    body = ("Given the following question and four candidate answers (A, B, C and D), choose the best answer.\n"
            f"Question: {item['question']['stem']}\n")
    option = ""
    texts = [choice["text"] for choice in item["question"]["choices"]]
    for i in range(4):  # a missing option repeats the previous line, as the official loop does
        if i < len(texts):
            option = f"{'ABCD'[i]}: {texts[i]}\n"
        body += option
    return body + ("Your response should end with \"The best answer is [the_answer_letter]\" where the "
                   "[the_answer_letter] is one of A, B, C or D.")


def arc_prompt(item: dict) -> str:
    """The csr prompt of the official llama3.py, byte for byte: the question in Llama-3's chat format."""
    return ("<|start_header_id|>user<|end_header_id|>\n\n" + arc_question(item)
            + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" + ANSWER_PREFIX)


def answer_letter(item: dict) -> str:
    """The letter (A-E by position) of an ARC item's right answer, whatever its labels."""
    labels = [choice["label"] for choice in item["question"]["choices"]]
    return "ABCDE"[labels.index(item["answerKey"])]


def _find_files(source: Path) -> dict[str, Path]:
    return {p.name: p for p in source.rglob("*") if p.is_file()}


def block_outputs(model, blocks: Sequence[int]) -> tuple[dict[int, torch.Tensor], Callable[[], None]]:
    """Forward hooks capturing the outputs of encoder blocks (no edited model files)."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for index in blocks:
        def hook(module, inputs, output, index=index):
            captured[index] = (output[0] if isinstance(output, tuple) else output).detach()
        handles.append(model.encoder.layer[index].register_forward_hook(hook))
    return captured, lambda: [h.remove() for h in handles]


def cls_pixels(image: Image.Image, corner: str = "centre", mirror: bool = False) -> torch.Tensor:
    """Resize the short side to 256 (bicubic), crop 224, ImageNet normalization: (1, 3, 224, 224).

    The paper's cls takes the centre crop; other corners and a mirror image give more views of a
    picture (training features of the mini dataset)."""
    width, height = image.size
    scale = 256 / min(width, height)
    image = image.convert("RGB").resize((round(width * scale), round(height * scale)), Image.BICUBIC)
    spare_x, spare_y = image.width - 224, image.height - 224
    left, top = {"centre": (spare_x // 2, spare_y // 2), "top-left": (0, 0),
                 "bottom-right": (spare_x, spare_y)}[corner]
    image = image.crop((left, top, left + 224, top + 224))
    if mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = ((np.asarray(image, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def dinov2_cls(model, image: Image.Image) -> np.ndarray:
    captured, remove = block_outputs(model, [LAST_BLOCK])
    with torch.no_grad():
        model(pixel_values=cls_pixels(image))
    remove()
    return captured[LAST_BLOCK].numpy()[None].astype(np.float32)


def _mmseg_normalized(image: Image.Image) -> np.ndarray:
    return ((np.asarray(image.convert("RGB"), np.float32) - MMSEG_MEAN) / MMSEG_STD).astype(np.float32)


def _centre_pad(x: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (height - x.shape[0]) // 2, (width - x.shape[1]) // 2
    out = np.zeros((height, width, x.shape[2]), np.float32)
    out[top:top + x.shape[0], left:left + x.shape[1]] = x
    return out


def dinov2_seg(model, image: Image.Image) -> np.ndarray:
    h_img, w_img = resized_size(image.height, image.width)
    x = _mmseg_normalized(image.convert("RGB").resize((w_img, h_img), Image.BILINEAR))
    captured, remove = block_outputs(model, [LAST_BLOCK])
    crops = []
    with torch.no_grad():
        for y1, y2, x1, x2 in crop_boxes(h_img, w_img):
            crop = _centre_pad(x[y1:y2, x1:x2], 518, 518)
            model(pixel_values=torch.from_numpy(crop).permute(2, 0, 1)[None])
            crops.append(captured[LAST_BLOCK].numpy())
    remove()
    return np.stack(crops).astype(np.float32)  # (n, 1, 1370, D)


def dinov2_dpt(model, image: Image.Image) -> np.ndarray:
    x = _centre_pad(_mmseg_normalized(image.convert("RGB")), 490, 644)
    captured, remove = block_outputs(model, DPT_BLOCKS)
    augs = []
    with torch.no_grad():
        for pixels in (x, x[:, ::-1].copy()):
            model(pixel_values=torch.from_numpy(pixels).permute(2, 0, 1)[None])
            augs.append(np.concatenate([captured[b].numpy() for b in DPT_BLOCKS]))
    remove()
    return np.stack(augs).astype(np.float32)  # (2, 4, 1611, D)


class LlamaSplit:
    """The last decoder layer's output (before the final RMSNorm) for a prompt, and the model's answer."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.captured: list[torch.Tensor] = []
        model.model.layers[-1].register_forward_hook(
            lambda module, inputs, output: self.captured.append((output[0] if isinstance(output, tuple) else output)
                                                                .detach()))

    def run(self, input_ids: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """(1, 1, T, H) feature before the final RMSNorm, and the model's logits (1, T, vocab)."""
        self.captured.clear()
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, use_cache=False).logits
        return self.captured[0].float().numpy()[None], logits

    def __call__(self, prompt: str) -> tuple[np.ndarray, str]:
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids  # adds BOS, as the official pipeline call does
        feature, logits = self.run(ids)
        token = int(logits[0, -1].float().argmax())
        return feature, self.tokenizer.decode([token], skip_special_tokens=True).strip()


def extract(task: str, source: Path, out: Path, model_dir: Path, limit: int | None = None,
            keep_correct: bool = False, progress: Callable[[int, int], None] | None = None,
            steps: int = 28, size: int = 1024, keep: int | None = None, weights: Path | None = None) -> list[str]:
    """Write features for every listed sample (see the module docstring); returns the ids written.

    With `keep_correct` (the paper's selection rules; `keep` caps how many are kept):
    - cls: the samples the linear head (`weights`: dinov2_vitg14_linear_head.pth, or its folder)
      classifies right, the first `keep` in list order;
    - csr: the items the model answers right, the `keep` longest prompts, longest first.
    The kept list is written as the list's name with the kept count (imagenet_selected_label100.txt)."""
    if keep_correct and task not in ("cls", "csr"):
        raise HarnessError(f"--keep-correct applies to cls and csr, not {task}")
    if keep is not None and not keep_correct and task != "tti":
        raise HarnessError("--keep goes with --keep-correct (or with tti captions from COCO annotations); "
                           "use --limit for the first N listed samples")
    spec = load_ctc().task(task)
    lists = sorted({p for pattern in spec.sample_lists for p in (source / spec.model_dir / task).glob(pattern)}
                   | {p for pattern in spec.sample_lists for p in source.glob(pattern.removeprefix("source/"))})
    target = out / spec.model_dir / task
    (target / "source").mkdir(parents=True, exist_ok=True)
    (target / "feature_test").mkdir(parents=True, exist_ok=True)
    annotations = sorted(source.rglob(COCO_CAPTIONS)) if task == "tti" and not lists else []
    if annotations:  # the paper's tti list is made from COCO's caption annotations
        if keep is None:
            raise HarnessError(f"{annotations[0]}: give --keep N, how many captions to select "
                               "(the paper: 500; the released example: 100)")
        lines = coco_caption_lines(annotations[0], keep)
        lists = [target / "source" / f"captions_val2017_select{len(lines)}.txt"]
        lists[0].write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not lists:
        raise HarnessError(f"{source}: no {task} sample list ({', '.join(spec.sample_lists)})"
                           + (f" and no {COCO_CAPTIONS} to make one from" if task == "tti" else ""))
    listing = lists[0]
    if task == "csr":
        written = _extract_csr(listing, target, model_dir, limit, keep_correct, progress, keep)
    elif task == "tti":
        written = _extract_tti(listing, target, model_dir, limit, progress, steps, size)
    else:
        linear = _cls_linear_head(weights) if keep_correct else None
        written = _extract_dinov2(task, listing, source, target, model_dir, limit, progress, linear, keep)
    if not keep_correct and listing.parent != target / "source":
        shutil.copy(listing, target / "source" / listing.name)
    return written


def coco_caption_lines(annotations: Path, count: int) -> list[str]:
    """The paper's tti sample list: the first `count` images of a COCO captions file (in its
    `images` order) that have a caption, each with its longest caption (the first of equal length)."""
    try:
        data = json.loads(Path(annotations).read_text(encoding="utf-8"))
        images, captions = data["images"], data["annotations"]
        longest: dict[int, str] = {}
        for entry in captions:
            text = " ".join(str(entry["caption"]).splitlines()).strip()
            if len(text) > len(longest.get(entry["image_id"], "")):
                longest[entry["image_id"]] = text
        ids = [image["id"] for image in images if image["id"] in longest][:count]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{annotations}: not a COCO captions file ({type(exc).__name__}: {exc})") from None
    return [f"COCO_val2017_{int(i):012d}.jpg {longest[i]}" for i in ids]


def counted_name(name: str, count: int) -> str:
    """A sample list's name with its count replaced: sampled_longest500.jsonl -> sampled_longest100.jsonl."""
    stem, dot, suffix = name.rpartition(".")
    digits = re.search(r"\d+$", stem)
    return (stem[:digits.start()] if digits else stem + "_") + f"{count}{dot}{suffix}"


def _cls_linear_head(weights: Path | None) -> dict:
    """The released cls linear head ({weight, bias}), read before any model is loaded."""
    from harness_plugins.heads import CLS_HEAD
    from harness_plugins.heads.weights import load_state, pick

    if weights is None:
        raise HarnessError(f"cls --keep-correct needs the linear head: --weights DIR holding {CLS_HEAD} "
                           "(or the file itself)")
    path = Path(weights) / CLS_HEAD if Path(weights).is_dir() else Path(weights)
    return pick(load_state(path), ["weight", "bias"], path)


def _cls_judge(model, linear: dict) -> Callable[[np.ndarray, int], bool]:
    """Whether the paper's cls head (the model's own final LayerNorm + the released linear head)
    classifies a stored feature as its label."""
    from harness_plugins.heads.dinov2 import ClsHead

    head = ClsHead(model.layernorm.normalized_shape[0], linear["weight"].shape[0])
    head.norm.load_state_dict(model.layernorm.state_dict())
    head.linear.load_state_dict(linear)
    head.eval()

    def right(feature: np.ndarray, label: int) -> bool:
        with torch.no_grad():
            return int(head(torch.from_numpy(feature[0])).argmax(dim=1)[0]) == label
    return right


def _extract_dinov2(task, listing, source, target, model_dir, limit, progress,
                    cls_linear: dict | None = None, keep: int | None = None) -> list[str]:
    """Every listed image's feature; with `cls_linear` (cls --keep-correct) only the first `keep` images
    the head classifies right."""
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(model_dir, local_files_only=True).eval()
    judge = _cls_judge(model, cls_linear) if cls_linear is not None else None
    fmt = {"cls": "name_label", "seg": "id", "dpt": "nyu_pairs"}[task]
    ids = parse_sample_list(listing, fmt)[:limit]
    lines = [line for line in listing.read_text(encoding="utf-8-sig").splitlines() if line.strip()][:len(ids)]
    files = _find_files(source)
    make = {"cls": dinov2_cls, "seg": dinov2_seg, "dpt": dinov2_dpt}[task]
    kept = []
    for done, (sample, line) in enumerate(zip(ids, lines), 1):
        first = line.split()[0]
        name = {"cls": f"{sample}.JPEG", "seg": f"{sample}.jpg", "dpt": Path(first).name}[task]
        candidates = [p for n, p in files.items() if n == name or (task == "dpt" and p.as_posix().endswith(first))]
        if not candidates:
            raise HarnessError(f"{source}: image {name} of sample {sample} not found")
        with Image.open(candidates[0]) as image:
            feature = make(model, image)
        if judge is None or judge(feature, int(line.split()[1])):
            np.save(target / "feature_test" / f"{sample}.npy", feature, allow_pickle=False)
            kept.append((sample, line))
        if progress:
            progress(done, len(ids))
        if keep is not None and len(kept) == keep:
            break
    if judge is not None:  # the paper's rule: the first ones the head classifies right
        if not kept:
            raise HarnessError(f"{listing}: the head classified none of the {len(ids)} images right")
        (target / "source" / counted_name(listing.name, len(kept))).write_text(
            "\n".join(line for _, line in kept) + "\n")
    return [sample for sample, _ in kept]


def _extract_csr(listing, target, model_dir, limit, keep_correct, progress, keep=None) -> list[str]:
    from transformers import AutoTokenizer, LlamaForCausalLM

    items = [json.loads(line) for line in listing.read_text().splitlines() if line.strip()][:limit]
    split = LlamaSplit(LlamaForCausalLM.from_pretrained(model_dir, local_files_only=True),
                       AutoTokenizer.from_pretrained(model_dir, local_files_only=True))
    kept = save_arc_features(split, items, arc_prompt, target, listing.name, keep_correct, keep, progress)
    return [item["id"] for item in kept]


def save_arc_features(split: LlamaSplit, items: list[dict], prompt_of: Callable[[dict], str], target: Path,
                      list_name: str, keep_correct: bool = False, keep: int | None = None,
                      progress: Callable[[int, int], None] | None = None, where: str = "") -> list[dict]:
    """Store each ARC item's feature under target/feature_test. With `keep_correct`, the paper's rule:
    only the items the model answers right, the `keep` longest prompts, longest first, written as the
    sample list `list_name` with the kept count. Returns the kept items."""
    (target / "feature_test").mkdir(parents=True, exist_ok=True)
    kept = []
    for done, item in enumerate(items, 1):
        feature, answer = split(prompt_of(item))
        if answer == answer_letter(item) or not keep_correct:
            np.save(target / "feature_test" / f"{item['id']}.npy", feature, allow_pickle=False)
            kept.append((feature.shape[2], item))
        if progress:
            progress(done, len(items))
    if not keep_correct:
        return [item for _, item in kept]
    if not kept:
        raise HarnessError(f"{where or list_name}: the model answered none of the {len(items)} ARC items right")
    kept.sort(key=lambda pair: -pair[0])
    for _, dropped in kept[keep:] if keep is not None else []:
        (target / "feature_test" / f"{dropped['id']}.npy").unlink()
    kept = kept[:keep] if keep is not None else kept
    (target / "source").mkdir(parents=True, exist_ok=True)
    (target / "source" / counted_name(list_name, len(kept))).write_text(
        "\n".join(json.dumps(item) for _, item in kept) + "\n")
    return [item for _, item in kept]


def _extract_tti(listing, target, model_dir, limit, progress, steps: int, size: int, batch: int = 16,
                 seed: int = 3407, guidance: float = 7.0) -> list[str]:
    from diffusers import StableDiffusion3Pipeline

    cuda = torch.cuda.is_available()
    pipe = StableDiffusion3Pipeline.from_pretrained(model_dir, local_files_only=True,
                                                    torch_dtype=torch.float16 if cuda else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if cuda:
        pipe.enable_model_cpu_offload()
    ids = parse_sample_list(listing, "name_caption")[:limit]
    captions = [line.split(maxsplit=1)[1].strip() for line in listing.read_text().splitlines() if line.strip()]
    torch.manual_seed(seed)  # once, then batches of 16: the official way to get its exact latents
    for start in range(0, len(ids), batch):
        prompts = captions[start:start + batch]
        latents = pipe(prompt=prompts, negative_prompt=[""] * len(prompts), num_inference_steps=steps,
                       height=size, width=size, guidance_scale=guidance, output_type="latent").images
        for offset, latent in enumerate(latents):
            np.save(target / "feature_test" / f"{ids[start + offset]}.npy",
                    latent[None].to(torch.float16).cpu().numpy(), allow_pickle=False)
        if progress:
            progress(min(start + batch, len(ids)), len(ids))
    return ids
