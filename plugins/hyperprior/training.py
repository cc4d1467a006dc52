"""Training one (task, λ) model with the official recipe (supplement §1.2, official train.py).

Loss λ·255²·MSE + bpp, Adam 1e-4 on the network, Adam 1e-3 on the entropy
bottleneck's quantiles with its aux loss every step, grad-norm clip 1.0,
ReduceLROnPlateau on the validation loss, random crops. Last and best
checkpoints in the official file-name pattern; resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import math
import os
from pathlib import Path
import time

import numpy as np
import torch

from harness import HarnessError, pad_to_multiple
from harness_plugins.hyperprior.checkpoints import CHECKPOINT_RE, checkpoint_name
from harness_plugins.hyperprior.codec import PAD_MULTIPLE
from harness_plugins.hyperprior.model import FeatureHyperprior, read_state_dict


def rd_loss(out: Mapping, x: torch.Tensor, lam: float, weights: torch.Tensor | float = 1.0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(λ·255²·MSE + bpp, bpp, MSE); bpp = Σ -log2 p over y and z / (B·H·W).

    weights: per-column factors of the squared error (the model's distortion_weights(): 1, or the
    squared column gains, so a column-normalized model's distortion is measured on its own scale).
    """
    b, _, h, w = x.shape
    bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    bpp = bits / (b * h * w)
    mse = ((out["x_hat"] - x).square() * torch.as_tensor(weights).to(x)).mean()
    return lam * 255.0**2 * mse + bpp, bpp, mse


INPUT_NORMS = ("scalar", "column")


def column_statistics(frames: Sequence[np.ndarray], indices: Sequence[int], floor: float = 0.01
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(centre, gain) per column over every row of the given frames: the mean and 1 / std.

    A column whose std is below `floor` times the median column std gets the gain of that floor, so
    a (nearly) constant channel is not blown up into noise the network would pay bits for.
    """
    total = sq = None
    rows = 0
    for i in indices:  # one pass: the frames may be read lazily from disk
        f = np.asarray(frames[i], dtype=np.float64)
        if total is None:
            total, sq = np.zeros(f.shape[1]), np.zeros(f.shape[1])
        if f.shape[1] != total.size:
            raise HarnessError(f"train: column normalization needs frames of one width, got {total.size} "
                               f"and {f.shape[1]}")
        total += f.sum(axis=0)
        sq += (f * f).sum(axis=0)
        rows += f.shape[0]
    mean = total / rows
    std = np.sqrt(np.maximum(sq / rows - mean * mean, 0.0))
    positive = std[std > 0]
    if positive.size == 0:
        raise HarnessError("train: every column of the training frames is constant; nothing to normalize")
    std = np.maximum(std, floor * float(np.median(positive)))
    return mean.astype(np.float32), (1.0 / std).astype(np.float32)


def effective_crop(frames: Sequence[np.ndarray], crop: tuple[int, int], log: Callable[[str], None]) -> tuple[int, int]:
    """The crop actually used: ≤ every (64-padded) frame, a multiple of 64."""
    min_h = min(f.shape[0] for f in frames)
    min_w = min(f.shape[1] for f in frames)
    out = []
    for want, have, axis in ((crop[0], min_h, "height"), (crop[1], min_w, "width")):
        have64 = max(PAD_MULTIPLE, have // PAD_MULTIPLE * PAD_MULTIPLE)  # frames < 64 get zero-padded
        got = min(int(want), have64) // PAD_MULTIPLE * PAD_MULTIPLE
        got = max(got, PAD_MULTIPLE)
        if got != want:
            log(f"crop {axis} {want} -> {got} (smallest frame {axis} {have}; crops are multiples of {PAD_MULTIPLE})")
        out.append(got)
    return out[0], out[1]


def random_crop(frame: np.ndarray, crop: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if frame.shape[0] < crop[0] or frame.shape[1] < crop[1]:
        frame, _ = pad_to_multiple(frame, PAD_MULTIPLE)  # only frames smaller than the crop
    top = int(rng.integers(0, frame.shape[0] - crop[0] + 1))
    left = int(rng.integers(0, frame.shape[1] - crop[1] + 1))
    return frame[top:top + crop[0], left:left + crop[1]]


def make_batch(frames: Sequence[np.ndarray], idx: Sequence[int], crop: tuple[int, int],
               rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    batch = np.stack([random_crop(np.asarray(frames[i], dtype=np.float32), crop, rng) for i in idx])
    return torch.from_numpy(batch)[:, None].to(device)


def epoch_batches(indices: Sequence[int], batch: int, steps: int, rng: np.random.Generator) -> list[list[int]]:
    """`steps` batches from shuffled passes over `indices` (the last of a pass may be smaller)."""
    out: list[list[int]] = []
    perm: list[int] = []
    while len(out) < steps:
        if not perm:
            perm = [int(i) for i in rng.permutation(indices)]
        out.append(perm[:batch])
        perm = perm[batch:]
    return out


def _check_recipe(stored: FeatureHyperprior, path: Path, network: tuple[int, int], column_norm: bool,
                  input_norm: tuple[float, float]) -> None:
    """HarnessError unless a stored model (resumed, or warm-start parent) has the recipe's network and normalization."""
    have = ((stored.N, stored.M), stored.columns is not None, (stored.input_gain, stored.input_center))
    want = (tuple(network), column_norm, tuple(float(v) for v in input_norm))
    if have != want:
        describe = "(N, M) = {}, column normalization {}, (gain, center) = {}".format
        raise HarnessError(f"train: {path} holds a model with {describe(*have)}; this recipe needs {describe(*want)}; "
                           "give another --out folder or the same settings")


@dataclass
class TrainResult:
    last: Path
    best: Path
    epochs_done: int
    best_loss: float
    history: list[dict]


def _adopt_previous_run(out_dir: Path, lam: float, lr: float, batch: int, crop: tuple[int, int],
                        last_path: Path, best_path: Path, log: Callable[[str], None]) -> None:
    """A run with the same λ, lr, batch and crop but another epoch count becomes this run's files.

    The epoch count is part of the official name, so extending a run renames its
    checkpoints (last and best) instead of leaving two candidates for one λ.
    """
    previous = []
    for path in out_dir.iterdir():
        m = CHECKPOINT_RE.match(path.name)
        if (m and not m["best"] and float(m["lam"]) == lam and float(m["lr"]) == lr
                and int(m["batch"]) == batch and (int(m["h"]), int(m["w"])) == tuple(crop)):
            previous.append((int(m["epochs"]), path))
    if not previous:
        return
    _, old_last = max(previous)
    old_best = old_last.with_name(old_last.name.replace("_checkpoint.pth.tar", "_checkpoint_best.pth.tar"))
    os.replace(old_last, last_path)
    if old_best.exists():
        os.replace(old_best, best_path)
    log(f"continuing {old_last.name}: renamed to {last_path.name}")


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(features: Sequence[np.ndarray], lam: float, out_dir: str | Path, crop: tuple[int, int] = (256, 256),
          batch: int = 128, epochs: int = 1, steps_per_epoch: int | None = None, lr: float = 1e-4,
          aux_lr: float = 1e-3, clip: float = 1.0, val_split: float = 0.1, val_batch: int = 64,
          resume: bool = True, seed: int = 0, device: str | None = None, network: tuple[int, int] = (128, 192),
          input_norm: tuple[float, float] = (1.0, 0.0), column_norm: bool = False,
          init_from: Path | None = None, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train one (task, λ) model on packed frames in [0, 1]; checkpoints in the official name pattern.

    - features: 2-D float frames in [0, 1] (any Sequence; a lazy one avoids holding all in memory).
    - An epoch is one shuffled pass, ceil(n_train / batch) steps with one random crop per
      frame (as the official FeatureFolder + DataLoader), or `steps_per_epoch` batches. Validation crops are drawn once (fixed seed) so
      the validation loss that drives ReduceLROnPlateau is comparable across epochs.
    - network: (N, M) of the ScaleHyperprior; the CTC's is (128, 192), a CTC may name a smaller one
      (the codec reads N and M from the checkpoint's weights).
    - input_norm: (gain, center) of the network's input normalization, stored in the checkpoint
      (FeatureHyperprior); (1, 0) is none, CompressAI's model.
    - column_norm: instead, a centre and gain per column measured on the training split (see
      column_statistics); crops then span the frame's full width and the distortion is measured on
      the normalized scale.
    - init_from: a checkpoint whose weights (and input normalization) this model starts from, e.g. the
      next lower λ's (warm start); a fresh optimizer. Ignored when resuming this model's own run.
    - Writes `<out_dir>/<name>_checkpoint.pth.tar` every epoch and `..._checkpoint_best.pth.tar`
      when the validation loss improves; with resume=True continues from the last one.
    """
    log = log or (lambda s: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    lam = float(lam)
    n = len(features)
    if n == 0:
        raise HarnessError("train: no training frames")
    for i in range(n):
        f = features[i]
        if f.ndim != 2:
            raise HarnessError(f"train: frame {i} has shape {f.shape}, expected 2-D")

    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_split))) if val_split > 0 and n > 1 else 0
    val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    if n_val == 0:
        log("no validation split: validating on the training frames")
        val_idx = train_idx
    if column_norm:
        width = features[train_idx[0]].shape[1]
        if width % PAD_MULTIPLE:
            raise HarnessError(f"train: column normalization needs frames whose width is a multiple of "
                               f"{PAD_MULTIPLE} (no padded columns); these are {width} wide")
        if crop[1] != width:
            log(f"crop width {crop[1]} -> {width}: a column-normalized model codes whole rows")
            crop = (crop[0], width)
    crop = effective_crop([features[i] for i in range(n)], crop, log)
    steps = steps_per_epoch or math.ceil(len(train_idx) / batch)

    last_path = out_dir / checkpoint_name(lam, epochs, lr, batch, crop)
    best_path = out_dir / checkpoint_name(lam, epochs, lr, batch, crop, best=True)

    torch.manual_seed(seed)
    model = FeatureHyperprior(*network, input_gain=input_norm[0], input_center=input_norm[1]).to(dev)
    if column_norm:
        model.set_column_norm(*(torch.from_numpy(v) for v in column_statistics(features, train_idx)))
    main_params = [p for name, p in model.named_parameters() if not name.endswith(".quantiles")]
    aux_params = [p for name, p in model.named_parameters() if name.endswith(".quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=aux_lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min")
    rng = np.random.default_rng(seed + 1)
    start, best_loss, history = 0, math.inf, []

    if resume and not last_path.exists():
        _adopt_previous_run(out_dir, lam, lr, batch, crop, last_path, best_path, log)
    if resume and last_path.exists():
        ckpt = torch.load(last_path, map_location=dev, weights_only=True)
        _check_recipe(FeatureHyperprior.from_state_dict(ckpt["state_dict"]), last_path, network, column_norm,
                      input_norm)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        scheduler.load_state_dict(ckpt["lr_scheduler"])
        start = int(ckpt["epoch"]) + 1
        best_loss = float(ckpt.get("best_loss", ckpt["loss"]))
        history = list(ckpt.get("history", []))
        if "rng_state" in ckpt:
            rng.bit_generator.state = ckpt["rng_state"]
        if "torch_rng_state" in ckpt:
            torch.set_rng_state(ckpt["torch_rng_state"].cpu())
        log(f"resumed from {last_path.name} after epoch {start - 1}")
    elif init_from is not None:
        parent = FeatureHyperprior.from_state_dict(read_state_dict(init_from))
        _check_recipe(parent, Path(init_from), network, column_norm, input_norm)
        model.load_state_dict(parent.state_dict())
        model.to(dev)
        log(f"starting from the weights of {Path(init_from).name}")

    val_rng = np.random.default_rng(seed + 2)
    val_batches = [make_batch(features, val_idx[i:i + val_batch], crop, val_rng, torch.device("cpu"))
                   for i in range(0, len(val_idx), val_batch)]

    for epoch in range(start, epochs):
        model.train()
        t0 = time.perf_counter()
        tot = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0}
        for idx in epoch_batches(train_idx, batch, steps, rng):
            x = make_batch(features, idx, crop, rng, dev)
            optimizer.zero_grad()
            aux_optimizer.zero_grad()
            loss, bpp, mse = rd_loss(model(x), x, lam, model.distortion_weights())
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(main_params, clip)
            optimizer.step()
            aux = model.aux_loss()
            aux.backward()
            aux_optimizer.step()
            for k, v in (("loss", loss), ("bpp", bpp), ("mse", mse), ("aux", aux)):
                tot[k] += float(v.detach()) / steps

        model.eval()
        val = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}
        count = sum(b.shape[0] for b in val_batches)
        with torch.no_grad():
            for xb in val_batches:
                xb = xb.to(dev)
                loss, bpp, mse = rd_loss(model(xb), xb, lam, model.distortion_weights())
                for k, v in (("loss", loss), ("bpp", bpp), ("mse", mse)):
                    val[k] += float(v) * xb.shape[0] / count
        scheduler.step(val["loss"])
        is_best = val["loss"] < best_loss
        best_loss = min(best_loss, val["loss"])
        record = {"epoch": epoch, "train_loss": tot["loss"], "train_bpp": tot["bpp"], "train_mse": tot["mse"],
                  "aux": tot["aux"], "val_loss": val["loss"], "val_bpp": val["bpp"], "val_mse": val["mse"],
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(record)
        ckpt = {"epoch": epoch, "state_dict": model.state_dict(), "loss": val["loss"], "best_loss": best_loss,
                "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "rng_state": rng.bit_generator.state,
                "torch_rng_state": torch.get_rng_state(), "history": history}
        _save(ckpt, last_path)
        if is_best:
            _save(ckpt, best_path)
        log(f"epoch {epoch + 1}/{epochs} train loss {tot['loss']:.4f} (bpp {tot['bpp']:.4f}, mse {tot['mse']:.6f}, "
            f"aux {tot['aux']:.2f}) val loss {val['loss']:.4f} (bpp {val['bpp']:.4f}, mse {val['mse']:.6f}) "
            f"lr {record['lr']:.2e} {record['seconds']:.1f}s{' *best*' if is_best else ''}")

    if not best_path.exists() and last_path.exists():
        _save(torch.load(last_path, map_location="cpu", weights_only=True), best_path)
    done = history[-1]["epoch"] + 1 if history else 0
    return TrainResult(last_path, best_path, done, best_loss, history)


