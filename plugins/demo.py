"""The built-in demo dataset: synthetic features in the exact CTC shapes and dtypes.

Made on first use, deterministically (seeded), in the official release layout
with sample lists in the official formats, so it is read like real data. The
statistics imitate the real features, which is what codecs react to:
- DINOv2-like (cls, seg, dpt): heavy-tailed channels, spatially smooth patch
  tokens, a few outlier channels reaching the hundreds (negative, as in
  DINOv2-g's [-542, 94]); dpt's four layers grow in range like the real ones and
  its second augmentation is the mirrored first;
- Llama-like (csr): small values with token-to-token correlation, a few
  massive activations on the first token and some persistently large channels;
- SD3-like (tti): smooth 16-channel latents in float16 inside [-5.79, 4.46].
They are not real features: task metrics on the demo measure fidelity to the
original features, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import math
from pathlib import Path

import numpy as np

from harness import DatasetSpec, hookimpl

DEMO_VERSION = "3"
# samples per task; seg crop counts and csr token counts vary like the real sets
SEG_CROPS = (2, 1, 3)
CSR_TOKENS = (186, 153, 259, 171, 208, 164)
COUNTS = {"cls": 6, "seg": len(SEG_CROPS), "dpt": 1, "csr": len(CSR_TOKENS), "tti": 6}
DPT_LAYERS = (  # (base scale, outlier magnitude, positive tail) per layer, after the real ranges
    (0.06, 1.3, 3.2), (0.8, 23.0, 5.0), (1.5, 300.0, 25.0), (2.2, 500.0, 100.0))


def _rng(task: str, index: int) -> np.random.Generator:
    return np.random.default_rng([2026, sum(map(ord, task)), index])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], width: float) -> np.ndarray:
    """Gaussian noise low-passed over the last two axes (FFT), unit std per map."""
    noise = rng.standard_normal(shape).astype(np.float32)
    h, w = shape[-2:]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    gain = np.exp(-(fy**2 + fx**2) * (width**2) * 2 * np.pi**2).astype(np.float32)
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=(h, w)).astype(np.float32)
    smooth /= smooth.std(axis=(-2, -1), keepdims=True) + 1e-6
    return smooth


def vit_tokens(rng: np.random.Generator, grid: tuple[int, int], dim: int, scale: float,
               outlier: float, positive: float) -> np.ndarray:
    """(1 + gh*gw, dim) tokens of a ViT block: cls token first, then patches row-major."""
    gh, gw = grid
    rank = 24
    maps = _smooth_noise(rng, (rank, gh, gw), width=2.5).reshape(rank, gh * gw)
    mixing = rng.standard_normal((rank, dim)).astype(np.float32) / math.sqrt(rank)
    channel_scale = np.exp(rng.normal(0, 0.5, dim)).astype(np.float32) * scale
    tail = rng.standard_t(4, (gh * gw, dim)).astype(np.float32) * 0.5
    patches = (maps.T @ mixing + tail) * channel_scale
    cls = rng.standard_normal(dim).astype(np.float32) * channel_scale * 1.5
    tokens = np.vstack([cls[None], patches])
    # outlier channels: a fixed few, hitting a minority of tokens hard (high-norm tokens)
    hot = rng.random(tokens.shape[0]) < 0.03
    for channel, sign, share in ((17, -1.0, 1.0), (301, -1.0, 0.6), (1111, 1.0, positive / max(outlier, 1e-6))):
        if channel >= dim:
            continue
        magnitude = outlier * share * rng.uniform(0.5, 1.0, tokens.shape[0]).astype(np.float32)
        tokens[:, channel] += sign * np.where(hot, magnitude, magnitude * 0.05)
    np.clip(tokens, -outlier - 3 * scale, positive, out=tokens)
    return tokens


def dinov2_feature(task: str, index: int, crops: int = 1) -> np.ndarray:
    return _dinov2_feature(task, index, crops).astype(np.float32, copy=False)


def _dinov2_feature(task: str, index: int, crops: int) -> np.ndarray:
    rng = _rng(task, index)
    if task == "cls":
        return vit_tokens(rng, (16, 16), 1536, 1.0, 540.0, 94.0)[None, None]
    if task == "seg":
        return np.stack([vit_tokens(rng, (37, 37), 1536, 1.0, 500.0, 100.0)[None] for _ in range(crops)])
    layers = [vit_tokens(rng, (35, 46), 1536, *params) for params in DPT_LAYERS]
    original = np.stack(layers)  # (4, 1611, 1536)
    mirrored = original.copy()
    grid = mirrored[:, 1:].reshape(4, 35, 46, 1536)
    mirrored[:, 1:] = grid[:, :, ::-1].reshape(4, 35 * 46, 1536)
    mirrored += rng.standard_normal(mirrored.shape, dtype=np.float32) * 0.02
    return np.stack([original, mirrored])


def llama_feature(index: int, tokens: int) -> np.ndarray:
    rng = _rng("csr", index)
    dim = 4096
    scale = np.exp(rng.normal(0.2, 0.5, dim)).astype(np.float32)
    noise = rng.standard_t(5, (tokens, dim)).astype(np.float32)
    hidden = np.empty_like(noise)
    state = np.zeros(dim, np.float32)
    for t in range(tokens):  # AR(1) over tokens: neighbouring tokens are correlated
        state = 0.55 * state + 0.835 * noise[t]
        hidden[t] = state
    hidden *= scale
    for channel, value in ((1415, 3.5), (2533, -3.0), (788, 2.5)):  # persistently large channels
        hidden[:, channel] += value * rng.uniform(0.6, 1.0, tokens).astype(np.float32)
    hidden[0, 1415], hidden[0, 2533], hidden[0, 3011] = 47.0, -71.0, -35.0  # massive activations on BOS
    np.clip(hidden, -71.0, 47.0, out=hidden)  # inside the paper's csr range [-71.50, 47.75]
    return hidden[None, None]


def sd3_latent(index: int) -> np.ndarray:
    rng = _rng("tti", index)
    latent = _smooth_noise(rng, (16, 128, 128), width=3.0) * 1.3
    latent += rng.normal(0, 0.35, (16, 1, 1)).astype(np.float32)
    np.clip(latent, -5.7, 4.4, out=latent)
    return latent.astype(np.float16)[None]


def _write_lists(root: Path) -> None:
    def write(rel: str, lines: list[str]) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("dinov2/cls/source/imagenet_selected_label6.txt",
          [f"ILSVRC2012_val_{i + 1:08d} {i}" for i in range(COUNTS["cls"])])
    write("dinov2/seg/source/val_3.txt", [f"demo_{i + 1:06d}" for i in range(COUNTS["seg"])])
    write("dinov2/dpt/source/NYU_Test1/nyu_test.txt",
          [f"demo_room/rgb_{i + 1:05d}.jpg demo_room/sync_depth_{i + 1:05d}.png 518.8579" for i in range(COUNTS["dpt"])])
    items = []
    for i, tokens in enumerate(CSR_TOKENS):
        choices = [{"text": f"synthetic option {label}", "label": label} for label in "ABCD"]
        items.append(json.dumps({"id": f"Demo_{i + 1:04d}", "question": {"stem": f"Synthetic question {i + 1}?",
                                 "choices": choices}, "answerKey": "ABCD"[i % 4]}))
    write("llama3/csr/source/sampled_longest6.jsonl", items)
    write("llama3/csr/source/arc_challenge_test_longest6_shape.txt",
          ["original min_max:  -71.5 47.75", "truncated region:  -5 5", f"scale:  {1023 / 10}", "quant_bits:  10"]
          + [f"Demo_{i + 1:04d}.npy 1 1 {t} 4096" for i, t in enumerate(CSR_TOKENS)])
    write("sd3/tti/source/captions_val2017_select6.txt",
          [f"COCO_val2017_{i + 1:012d}.jpg A synthetic caption number {i + 1}." for i in range(COUNTS["tti"])])


def make_demo(ctc, root: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the demo dataset under `root` (official layout); deterministic."""
    _write_lists(root)
    makers: list[tuple[str, Callable[[], np.ndarray]]] = []
    makers += [(f"dinov2/cls/feature_test/ILSVRC2012_val_{i + 1:08d}.npy", lambda i=i: dinov2_feature("cls", i))
               for i in range(COUNTS["cls"])]
    makers += [(f"dinov2/seg/feature_test/demo_{i + 1:06d}.npy", lambda i=i, c=c: dinov2_feature("seg", i, c))
               for i, c in enumerate(SEG_CROPS)]
    makers += [(f"dinov2/dpt/feature_test/demo_room_rgb_{i + 1:05d}.npy", lambda i=i: dinov2_feature("dpt", i))
               for i in range(COUNTS["dpt"])]
    makers += [(f"llama3/csr/feature_test/Demo_{i + 1:04d}.npy", lambda i=i, t=t: llama_feature(i, t))
               for i, t in enumerate(CSR_TOKENS)]
    makers += [(f"sd3/tti/feature_test/COCO_val2017_{i + 1:012d}.npy", lambda i=i: sd3_latent(i))
               for i in range(COUNTS["tti"])]
    for done, (rel, make) in enumerate(makers):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, make(), allow_pickle=False)
        if progress:
            progress(done + 1, len(makers))
    return root


@hookimpl
def harness_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="demo", version=DEMO_VERSION, prepare=make_demo,
                        description="synthetic features in the exact CTC shapes (made on first use, seeded)")]
