"""Task metrics exactly as the CTC defines them (official code; CTC.md, OFFICIAL-CODE §7).

Pure numpy: each takes per-sample predictions and targets and aggregates over
the set the way the paper does (mIoU pools one histogram; RMSE averages
per-image values; FID compares two sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top1_accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """% of samples whose predicted class (or token) equals the label."""
    if len(predicted) != len(labels) or not len(labels):
        raise ValueError("accuracy needs equally many predictions and labels, at least one")
    return 100.0 * float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def confusion_histogram(label: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """classes x classes counts of (label, prediction); labels outside [0, classes) (255) are ignored."""
    keep = (label >= 0) & (label < classes)
    index = classes * label[keep].astype(np.int64) + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes).astype(np.float64)


def mean_iou(hist: np.ndarray) -> float:
    """mIoU % from a histogram pooled over the whole set; classes absent from both sides are skipped."""
    diag = np.diag(hist)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = diag / (hist.sum(1) + hist.sum(0) - diag)
    return 100.0 * float(np.nanmean(iou))


EIGEN_CROP = (slice(45, 471), slice(41, 601))  # rows, columns of a 480x640 NYU image


def depth_rmse(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 10.0,
               eigen_crop: bool = True) -> float:
    """RMSE (m) of one image over valid pixels: min < gt < max, inside the Eigen crop."""
    valid = (gt > min_depth) & (gt < max_depth)
    if eigen_crop:
        crop = np.zeros_like(valid)
        crop[EIGEN_CROP] = True
        valid &= crop
    if not valid.any():
        return float("nan")
    return float(np.sqrt(np.mean((gt[valid].astype(np.float64) - pred[valid]) ** 2)))


def mean_depth_rmse(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], **kwargs) -> float:
    """The paper's dpt figure: the mean over images of per-image RMSE."""
    return float(np.nanmean([depth_rmse(p, g, **kwargs) for p, g in zip(preds, gts)]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (rows = samples): |mu_a - mu_b|^2 + tr(Sa + Sb - 2 sqrt(Sa Sb)).

    NaN with fewer than two samples on a side (no covariance).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                  - 2 * trace_sqrt_product(cov_a, cov_b))
    return max(value, 0.0)


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr(sqrtm(Sa Sb)) for symmetric positive semi-definite Sa, Sb.

    Sa Sb has the eigenvalues of the symmetric PSD matrix R Sb R, R = Sa^(1/2), so two symmetric
    eigendecompositions replace a general matrix square root: the same value as the usual
    `scipy.linalg.sqrtm` FID code to ~1e-12 on full-rank covariances, stable on the rank-deficient
    ones of small sample sets (where scipy >= 1.16's sqrtm takes minutes for 2048 dimensions).
    """
    w, v = np.linalg.eigh(cov_a)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    product = root @ cov_b @ root
    eig = np.linalg.eigvalsh((product + product.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def saliency_cc(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation coefficient between two saliency maps (MIT saliency benchmark's CC)."""
    a = np.asarray(pred, np.float64).ravel()
    b = np.asarray(target, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom == 0:
        return 1.0 if np.array_equal(pred, target) else 0.0
    return float((a * b).sum() / denom)


def saliency_kl(pred: np.ndarray, target: np.ndarray) -> float:
    """KL divergence of the predicted map from the target map, both normalized to sum 1
    (MIT saliency benchmark's KLdiv: sum P log(eps + P / (Q + eps)), eps = float64 epsilon)."""
    eps = np.finfo(np.float64).eps
    p = np.asarray(target, np.float64).ravel()
    q = np.asarray(pred, np.float64).ravel()
    p, q = p / max(p.sum(), eps), q / max(q.sum(), eps)
    return max(0.0, float((p * np.log(eps + p / (q + eps))).sum()))  # not -1e-11 for equal maps


def token_agreement(predicted: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """% of token positions, pooled over samples, where the predicted token equals the target token."""
    if len(predicted) != len(targets) or not len(targets):
        raise ValueError("agreement needs equally many predictions and targets, at least one")
    pairs = [(np.asarray(p).ravel(), np.asarray(t).ravel()) for p, t in zip(predicted, targets)]
    if any(p.shape != t.shape for p, t in pairs):
        raise ValueError("each prediction must have as many tokens as its target")
    return 100.0 * sum(int((p == t).sum()) for p, t in pairs) / sum(t.size for _, t in pairs)
