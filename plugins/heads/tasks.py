"""The five heads as the harness uses them: build (official or demo), predict, targets, score."""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from harness import HarnessError, HeadContext
from harness.metrics import confusion_histogram, frechet_distance, mean_depth_rmse, mean_iou, top1_accuracy
from harness_plugins.heads import CLS_HEAD, inception
from harness_plugins.heads.extract import answer_letter
from harness_plugins.heads.dinov2 import ClsHead, DepthHead, SegHead
from harness_plugins.heads.llama import CsrHead
from harness_plugins.heads.sd3 import RandomFeatures, decode_image, tiny_vae
from harness_plugins.heads.weights import load_state, pick, seeded

INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _dinov2_norm(head, context: HeadContext) -> None:
    path = context.weights / "dinov2_vitg14_pretrain.pth"
    state = pick(load_state(path), ["norm.weight", "norm.bias"], path)
    head.norm.load_state_dict({"weight": state["norm.weight"], "bias": state["norm.bias"]})


class Cls:
    metric = "top1_accuracy"

    def __init__(self, context: HeadContext) -> None:
        self.context = context
        self.head = ClsHead(1536, 1000)
        if context.backend == "official":
            _dinov2_norm(self.head, context)
            path = context.weights / CLS_HEAD
            self.head.linear.load_state_dict(pick(load_state(path), ["weight", "bias"], path))
        else:
            seeded(self.head, 1001)
        self.head.to(context.device).eval()

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.head(torch.from_numpy(np.ascontiguousarray(feature[0])).to(self.context.device))
        return np.array([int(logits.argmax(dim=1)[0])])

    def ground_truth(self, sample_ids: Sequence[str]):
        if self.context.synthetic:
            return None
        path = self.context.dataset.sample_list_path("cls")
        labels = dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())
        return [np.array([int(labels[s])]) for s in sample_ids]

    def score(self, predictions, targets) -> float:
        return top1_accuracy([int(p[0]) for p in predictions], [int(t[0]) for t in targets])


class Seg:
    metric = "miou"

    def __init__(self, context: HeadContext) -> None:
        self.context = context
        self.head = SegHead(1536, 21)
        if context.backend == "official":
            _dinov2_norm(self.head, context)
            path = context.weights / "dinov2_vitg14_voc2012_linear_head.pth"
            raw = load_state(path)
            keys = ["conv_seg.weight", "conv_seg.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
            state = pick(raw.get("state_dict", raw), keys, path, prefix="decode_head.")
            self.head.conv_seg.load_state_dict({k[9:]: state[k] for k in keys[:2]})
            self.head.bn.load_state_dict({k[3:]: state[k] for k in keys[2:]}, strict=False)
        else:
            seeded(self.head, 1002)
        self.head.to(context.device).eval()

    def image_size(self, sample_id: str, crops: int) -> tuple[int, int]:
        if self.context.synthetic:  # a 512-high image as wide as its crops need
            return 512, 512 + 341 * (crops - 1)
        from PIL import Image

        with Image.open(self._gt_path(sample_id)) as image:
            return image.height, image.width

    def _gt_path(self, sample_id: str) -> Path:
        return self.context.dataset.task_dir("seg") / "source" / "VOC2012" / "SegmentationClass" / f"{sample_id}.png"

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        crops = torch.from_numpy(np.ascontiguousarray(feature[:, 0])).to(self.context.device)
        with torch.no_grad():
            return self.head.segment(crops, self.image_size(sample_id, feature.shape[0]))

    def ground_truth(self, sample_ids: Sequence[str]):
        if self.context.synthetic:
            return None
        from PIL import Image

        return [np.array(Image.open(self._gt_path(s))) for s in sample_ids]

    def score(self, predictions, targets) -> float:
        hist = sum(confusion_histogram(t, p, 21) for p, t in zip(predictions, targets))
        return mean_iou(hist)


class Dpt:
    metric = "rmse"

    def __init__(self, context: HeadContext) -> None:
        self.context = context
        self.head = DepthHead(1536)
        if context.backend == "official":
            path = context.weights / "dinov2_vitg14_nyu_linear4_head.pth"
            raw = load_state(path)
            state = pick(raw.get("state_dict", raw), ["conv_depth.weight", "conv_depth.bias"], path,
                         prefix="decode_head.")
            self.head.conv_depth.load_state_dict({k[11:]: v for k, v in state.items()})
        else:
            seeded(self.head, 1003, scale=4.0)
        self.head.to(context.device).eval()

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.head.predict(torch.from_numpy(np.ascontiguousarray(feature)).to(self.context.device)
                                     ).astype(np.float32)

    def ground_truth(self, sample_ids: Sequence[str]):
        if self.context.synthetic:
            return None
        from PIL import Image

        listing = self.context.dataset.sample_list_path("dpt")
        depth_of = {}
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                scene, image = parts[0].rsplit("/", 1)
                depth_of[f"{scene.replace('/', '_')}_{Path(image).stem}"] = listing.parent / parts[1]
        return [np.asarray(Image.open(depth_of[s]), np.float32) / 1000 for s in sample_ids]

    def score(self, predictions, targets) -> float:
        return mean_depth_rmse(predictions, targets)


class Csr:
    metric = "accuracy"

    def __init__(self, context: HeadContext) -> None:
        self.context, self.tokenizer = context, None
        if context.backend == "official":
            self.head, self.tokenizer = _official_llama_head(context.weights / "Meta-Llama-3-8B-Instruct")
        else:
            self.head = seeded(CsrHead(4096, 4), 1004)  # demo: a 4-token vocabulary, the answer letters
        self.head.to(context.device)

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        return np.array([self.head.next_token(feature)])

    def ground_truth(self, sample_ids: Sequence[str]):
        if self.context.synthetic or self.tokenizer is None:
            return None
        path = self.context.dataset.sample_list_path("csr")
        items = {}
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                items[item["id"]] = answer_letter(item)
        return [items[s] for s in sample_ids]

    def score(self, predictions, targets) -> float:
        if targets and isinstance(targets[0], str):  # answer letters: compare the decoded token
            said = [self.tokenizer.decode([int(p[0])], skip_special_tokens=True).strip() for p in predictions]
            return 100.0 * float(np.mean([s == t for s, t in zip(said, targets)]))
        return top1_accuracy([int(p[0]) for p in predictions], [int(t[0]) for t in targets])


def _official_llama_head(folder: Path):
    """Only the final norm and lm_head of a local Llama-3 checkpoint (safetensors), plus its tokenizer."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    head = CsrHead(config.hidden_size, config.vocab_size, config.rms_norm_eps)
    index = folder / "model.safetensors.index.json"
    shards = json.loads(index.read_text())["weight_map"] if index.exists() else None
    wanted = {"model.norm.weight": head.norm.weight, "lm_head.weight": head.lm_head.weight}
    for key, param in wanted.items():
        shard = folder / (shards[key] if shards else "model.safetensors")
        with safe_open(str(shard), framework="pt") as handle:
            param.data = handle.get_tensor(key).to(torch.bfloat16)
    head.to(torch.bfloat16).eval()
    return head, AutoTokenizer.from_pretrained(folder, local_files_only=True)


class Tti:
    metric = "fid"

    def __init__(self, context: HeadContext) -> None:
        self.context = context
        if context.backend == "official":
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(context.weights / "stable-diffusion-3-medium-diffusers" / "vae",
                                                     local_files_only=True).eval()
            paper_net = context.weights / INCEPTION_FILE
            self.features = inception.network() if not paper_net.exists() and inception.available() \
                else _inception(paper_net)
        else:
            torch.manual_seed(1005)
            self.vae = tiny_vae().eval()
            # a real Inception when the fid-helper wheel is installed, else a seeded stand-in
            self.features = inception.network() if inception.available() \
                else seeded(RandomFeatures(), 1006).to(context.device)
        self.vae.to(context.device)

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        image = decode_image(self.vae, feature)
        with torch.no_grad():
            return self.features(image)[0].double().cpu().numpy()

    def ground_truth(self, sample_ids):
        return None  # the reference images are decoded from the original latents, by definition

    def score(self, predictions, targets) -> float:
        return frechet_distance(np.stack(targets), np.stack(predictions))


def _inception(path: Path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        raise HarnessError(f"{path}: sha256 {digest[:16]}... is not the expected Inception weights "
                           f"({INCEPTION_SHA256_PREFIX}...)")
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise HarnessError("FID with Inception needs torch-fidelity: pip install torch-fidelity") from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    return lambda images: net(images.cpu())[0]  # the VAE may run on CUDA; the extractor stays on the CPU


HEADS = {"cls": Cls, "seg": Seg, "dpt": Dpt, "csr": Csr, "tti": Tti}
