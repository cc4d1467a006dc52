"""Tail-aware training: a distortion metric through the frozen task head (`-o tail=NAME`).

The plain KLT spends bits to minimize the squared error of the features. A task does not weigh all
directions alike: a greedy next-token head changes its answer when the coding error moves a token
across the boundary between its two best logits. The margin metric

    M = mean over training tokens of  g g^T / max(margin, 0.1),   g = d(logit_1 - logit_2) / d token

weighs the directions that flip decisions, most for the tokens closest to flipping; the transform
is then fitted in this metric (model.fit). Only the training features and the frozen head are
used, once, at training time: the decoder needs neither (the transform is in the model files).
The head must act on each token alone (a norm and a linear layer, as the lm heads do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from harness import HarnessError

#: The heads a transform can be fitted through, by name.
TAILS = {"mini-lm": "SmolLM2-135M's final RMSNorm + tied lm_head (the mini dataset's lm head)"}


def tail_head(name: str) -> Callable:
    """The head `name` as a torch callable: (tokens, D) -> (tokens, vocabulary) logits."""
    if name == "mini-lm":
        from harness_plugins.mini import language
        from harness_plugins.wheelfiles import require

        return language.load_head(require(["smollm2"], ["gguf"])["smollm2"]).requires_grad_(False)
    raise HarnessError(f"klt: unknown tail '{name}'; available: "
                       + "; ".join(f"{k} ({v})" for k, v in TAILS.items()))


def margin_metric(head: Callable, token_blocks: Iterable[np.ndarray], batch: int = 128,
                  floor: float = 0.1) -> np.ndarray:
    """The margin metric M (D x D, float64) of `head` over the token rows of every block."""
    import torch

    total, count = None, 0
    for tokens in token_blocks:
        for start in range(0, len(tokens), batch):
            x = torch.tensor(np.asarray(tokens[start:start + batch], dtype=np.float32), requires_grad=True)
            top = head(x).topk(2, dim=-1).values
            margin = top[:, 0] - top[:, 1]
            margin.sum().backward()  # the head acts per token: row t of the gradient is token t's g
            grad = x.grad.double().numpy()
            weight = 1.0 / np.maximum(margin.detach().double().numpy(), floor)
            block = (grad * weight[:, None]).T @ grad
            total = block if total is None else total + block
            count += len(grad)
    if not count:
        raise HarnessError("klt: no training tokens for the tail metric")
    return total / count
