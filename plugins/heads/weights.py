"""Loading head weights: official files (weights_only, mmap where possible) or seeded random ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from harness import HarnessError

CPU = "cpu"


def load_state(path: Path) -> Mapping:
    """A torch checkpoint without unpickling objects; mmap when the file allows (4 GB backbones)."""
    import torch

    if not Path(path).is_file():
        raise HarnessError(f"{path}: weights file not found")
    try:
        try:
            return torch.load(path, map_location=CPU, weights_only=True, mmap=True)
        except RuntimeError:  # old (non-zip) format: no mmap
            return torch.load(path, map_location=CPU, weights_only=True)
    except Exception as exc:
        raise HarnessError(f"{path}: not a weights-only torch file ({type(exc).__name__}: {exc})") from None


def pick(state: Mapping, keys: Iterable[str], path: Path, prefix: str = "") -> dict:
    """The named tensors (after stripping `prefix`), or an error listing the missing keys and what is there."""
    state = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in state.items()}
    keys = list(keys)
    missing = [k for k in keys if k not in state]
    if missing:
        shown = ", ".join(sorted(state)[:12])
        raise HarnessError(f"{path}: missing keys {', '.join(missing)}; the file has: {shown}")
    return {k: state[k] for k in keys}


def seeded(module, seed: int, scale: float = 1.0):
    """Give a module deterministic random weights (demo heads): same seed, same head, on any machine."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
            elif param.ndim == 1:  # norm weights
                param.copy_(1 + torch.randn(param.shape, generator=generator) * 0.1)
            else:
                fan_in = max(1, param[0].numel())
                param.copy_(torch.randn(param.shape, generator=generator) * scale / fan_in**0.5)
    return module.eval()
