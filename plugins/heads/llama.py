"""Llama-3 csr head: the final RMSNorm and lm_head on the injected last-layer output (OFFICIAL-CODE §7.4).

The feature is cast to bfloat16 as the official injection does; only the last
token's row decides the one greedy token after "The best answer is".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CsrHead(nn.Module):
    def __init__(self, hidden: int = 4096, vocab: int = 128256, eps: float = 1e-5) -> None:
        super().__init__()
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        self.norm = LlamaRMSNorm(hidden, eps=eps)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def next_token(self, feature: np.ndarray) -> int:
        """(1, 1, T, H) -> the greedy next token after the prompt (bf16 like the official code)."""
        last = torch.from_numpy(np.ascontiguousarray(feature[0, 0, -1:]))[None]
        last = last.to(device=self.lm_head.weight.device, dtype=torch.bfloat16)
        with torch.no_grad():
            logits = self.lm_head(self.norm(last)).float()
        return int(logits[0, -1].argmax())
