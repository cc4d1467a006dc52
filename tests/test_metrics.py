"""Task metrics against hand-computed small cases."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import confusion_histogram, depth_rmse, frechet_distance, mean_depth_rmse, mean_iou, top1_accuracy


def test_accuracy():
    assert top1_accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 75.0
    with pytest.raises(ValueError):
        top1_accuracy([1], [1, 2])


def test_miou_pooled_histogram_with_ignored_and_absent_classes():
    # image 1: classes 0/1; image 2: class 1 and an ignored pixel (255); class 2 absent everywhere
    l1, p1 = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    l2, p2 = np.array([1, 1, 255]), np.array([1, 0, 2])
    hist = confusion_histogram(l1, p1, 3) + confusion_histogram(l2, p2, 3)
    # class 0: tp 1, fp 1 (l2), fn 1 (l1) -> 1/3; class 1: tp 3, fp 1, fn 1 -> 3/5; class 2 absent -> skipped
    assert mean_iou(hist) == pytest.approx(100 * (1 / 3 + 3 / 5) / 2)
    # pooled, not the mean of per-image mIoUs
    per_image = (mean_iou(confusion_histogram(l1, p1, 3)) + mean_iou(confusion_histogram(l2, p2, 3))) / 2
    assert mean_iou(hist) != pytest.approx(per_image)


def test_eigen_crop_rmse():
    gt = np.full((480, 640), 2.0, np.float32)
    pred = np.full((480, 640), 2.0, np.float32)
    pred[0:45] = 100.0      # outside the Eigen crop: ignored
    pred[100, 100] = 5.0    # inside: one pixel off by 3 m
    gt[200, 200] = 0.0      # invalid ground truth: ignored
    gt[201, 201] = 12.0     # beyond 10 m: ignored
    n = (471 - 45) * (601 - 41) - 2
    assert depth_rmse(pred, gt) == pytest.approx(np.sqrt(9 / n))
    assert mean_depth_rmse([pred, gt], [gt, gt]) == pytest.approx(np.sqrt(9 / n) / 2)


def test_fid_identical_sets_is_zero_and_shift_is_squared_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 8))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)  # same covariance, mean shift
    assert np.isnan(frechet_distance(a[:1], a))  # one sample has no covariance


def test_trace_sqrt_product_equals_scipy_sqrtm_on_full_rank_covariances():
    from scipy import linalg

    from harness.metrics import trace_sqrt_product
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((300, 40)), rng.standard_normal((300, 40)) @ rng.standard_normal((40, 40))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.trace(np.real(linalg.sqrtm(cov_a @ cov_b)))
    assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_few_samples_in_many_dimensions_is_finite_and_fast():
    # the tti head's case: a handful of images, 2048-dimensional Inception features (rank-deficient)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 512))
    value = frechet_distance(a, a + rng.standard_normal(a.shape) * 0.1)
    assert np.isfinite(value) and 0 < value < frechet_distance(a, a + 1.0)
