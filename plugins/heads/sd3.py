"""SD3 tti head: VAE decode of the latent, then image features for FID (OFFICIAL-CODE §7.5).

latent / scaling_factor + shift_factor -> AutoencoderKL.decode -> uint8 image
(the pipeline's postprocess) -> a feature network (Inception-v3 pool features
for the official FID; a seeded random conv net for the demo). Decoding runs in
float32 on the CPU (the official run used float16 on a GPU).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def tiny_vae():
    """A small 16-latent-channel AutoencoderKL with SD3's scaling/shift (demo and tests)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8, act_fn="silu",
                         sample_size=64, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                         use_post_quant_conv=False, force_upcast=True)


class RandomFeatures(nn.Module):
    """Stand-in for Inception in the demo: a seeded conv net giving 64-d pooled features of 299 px inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                    nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8 (B, 3, H, W)
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128).mean(dim=(2, 3))


def decode_image(vae, latent: np.ndarray) -> torch.Tensor:
    """(1, 16, h, w) float16 latent -> (1, 3, H, W) uint8 image."""
    z = torch.from_numpy(latent.astype(np.float32)).to(vae.device)
    z = z / vae.config.scaling_factor + vae.config.shift_factor
    with torch.no_grad():
        image = vae.decode(z, return_dict=False)[0]
    image = (image * 0.5 + 0.5).clamp(0, 1)
    return (image * 255).round().to(torch.uint8)
