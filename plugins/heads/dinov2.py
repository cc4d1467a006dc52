"""DINOv2 ViT-g/14 heads on the split features: cls, seg, dpt (official code, OFFICIAL-CODE §7.1-7.3).

Plain torch, no mmcv/mmseg. Official weights: the backbone's final LayerNorm
(`norm.weight`, `norm.bias` of dinov2_vitg14_pretrain.pth; eps 1e-6) and the
released head files. cls and seg apply the LayerNorm in the head; dpt does not.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

EPS = 1e-6
CROP, STRIDE, PATCH = 512, 341, 14


class ClsHead(nn.Module):
    """LayerNorm -> concat(cls token, mean of patch tokens) -> linear (2D -> 1000)."""

    def __init__(self, dim: int = 1536, classes: int = 1000) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.linear = nn.Linear(2 * dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, 1 + patches, D) -> (B, classes)
        x = self.norm(tokens)
        return self.linear(torch.cat([x[:, 0], x[:, 1:].mean(dim=1)], dim=1))


def crop_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Sliding-window crops (y1, y2, x1, x2) of the official seg inference, in file order (rows outer)."""
    def grids(size: int) -> int:
        return max(size - CROP + STRIDE - 1, 0) // STRIDE + 1

    boxes = []
    for h_idx in range(grids(height)):
        for w_idx in range(grids(width)):
            y1, x1 = h_idx * STRIDE, w_idx * STRIDE
            y2, x2 = min(y1 + CROP, height), min(x1 + CROP, width)
            boxes.append((max(y2 - CROP, 0), y2, max(x2 - CROP, 0), x2))
    return boxes


def resized_size(height: int, width: int) -> tuple[int, int]:
    """mmcv keep-ratio resize to img_scale (2048, 512): the short side becomes 512."""
    scale = min(2048 / max(height, width), 512 / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


class SegHead(nn.Module):
    """Per crop: LayerNorm -> drop cls -> (D, 37, 37) -> BN -> 1x1 conv (21) -> 512x512 logits, stitched."""

    def __init__(self, dim: int = 1536, classes: int = 21) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.bn = nn.BatchNorm2d(dim)
        self.conv_seg = nn.Conv2d(dim, classes, 1)

    def crop_logits(self, tokens: torch.Tensor) -> torch.Tensor:  # (1, 1370, D) -> (1, 21, 512, 512)
        x = self.norm(tokens)[:, 1:]
        side = math.isqrt(x.shape[1])
        x = x.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        logits = self.conv_seg(self.bn(x))
        return F.interpolate(logits, size=(CROP, CROP), mode="bilinear", align_corners=False)

    def segment(self, crops: torch.Tensor, original: tuple[int, int]) -> np.ndarray:
        """crops (n, 1370, D) of an image of `original` (h, w) -> label map (h, w)."""
        h_img, w_img = resized_size(*original)
        boxes = crop_boxes(h_img, w_img)
        if len(boxes) != crops.shape[0]:
            raise ValueError(f"{crops.shape[0]} crops stored, the {original} image gives {len(boxes)}")
        classes = self.conv_seg.out_channels
        preds = torch.zeros(1, classes, h_img, w_img, device=crops.device)
        count = torch.zeros(1, 1, h_img, w_img, device=crops.device)
        for crop, (y1, y2, x1, x2) in zip(crops, boxes):
            preds[:, :, y1:y2, x1:x2] += self.crop_logits(crop[None])
            count[:, :, y1:y2, x1:x2] += 1
        preds = F.interpolate(preds / count, size=original, mode="bilinear", align_corners=False)
        return preds.softmax(dim=1).argmax(dim=1)[0].cpu().numpy().astype(np.uint8)


class DepthHead(nn.Module):
    """linear4: per layer [patches, cls] -> 1x1 conv over the 4 layers (8D -> 256 bins) -> depth.

    The official head resizes the 8D-channel map x4 before the 1x1 conv; both
    are linear and the resize weights sum to one, so the conv runs first on the
    35x46 grid (same result up to float rounding, 16x less memory).
    """

    def __init__(self, dim: int = 1536, bins: int = 256, min_depth: float = 1e-3, max_depth: float = 10.0) -> None:
        super().__init__()
        self.conv_depth = nn.Conv2d(8 * dim, bins, 1)
        self.register_buffer("bins", torch.linspace(min_depth, max_depth, bins), persistent=False)
        self.min_depth, self.max_depth = min_depth, max_depth

    def forward(self, layers: torch.Tensor, grid: tuple[int, int] = (35, 46),
                out: tuple[int, int] = (480, 640)) -> torch.Tensor:  # (4, 1 + h*w, D) -> (1, 1, H, W)
        parts = []
        for tokens in layers:
            cls, patches = tokens[0], tokens[1:]
            p = patches.reshape(1, *grid, -1).permute(0, 3, 1, 2)
            parts += [p, cls[None, :, None, None].expand_as(p)]
        logits = self.conv_depth(torch.cat(parts, dim=1))
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        weights = torch.relu(logits) + 0.1
        weights = weights / weights.sum(dim=1, keepdim=True)
        depth = torch.einsum("ikmn,k->imn", weights, self.bins).unsqueeze(1)
        depth = depth.clamp(self.min_depth, self.max_depth)
        return F.interpolate(depth, size=out, mode="bilinear", align_corners=False)

    def predict(self, feature: torch.Tensor) -> np.ndarray:
        """(2 augs, 4 layers, 1611, D): original and mirrored predictions, averaged -> (480, 640)."""
        first = self(feature[0])
        mirrored = self(feature[1]).flip(dims=(3,))
        return ((first + mirrored) / 2)[0, 0].cpu().numpy()
