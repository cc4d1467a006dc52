"""Shared fixtures: the paper CTC, small data roots in the official layout."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from harness.ctc import load_ctc

SHARED_EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "official-data-example"


@pytest.fixture(scope="session")
def ctc():
    return load_ctc()


# Keep the demo cache out of the user's home, for every fixture scope; one per test session.
os.environ["FCM_HARNESS_CACHE"] = tempfile.mkdtemp(prefix="fcm-harness-test-cache-")


def write_feature(root: Path, model: str, task: str, sample: str, array: np.ndarray) -> Path:
    path = root / model / task / "feature_test" / f"{sample}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return path


def make_root(root: Path, cls_ids=("img_a", "img_b"), csr_tokens=(5, 7), with_features=True) -> Path:
    """A tiny official-layout data root with cls and csr (real CTC shapes, few tokens for csr)."""
    src = root / "dinov2" / "cls" / "source"
    src.mkdir(parents=True)
    # the authors' lists may lack a final newline and use CRLF: do the same here
    (src / "imagenet_selected_label2.txt").write_bytes(
        "\r\n".join(f"{s} {i}" for i, s in enumerate(cls_ids)).encode())
    csr_src = root / "llama3" / "csr" / "source"
    csr_src.mkdir(parents=True)
    items = [{"id": f"Q{i}", "question": {"stem": "?", "choices": []}, "answerKey": "A"} for i in range(len(csr_tokens))]
    (csr_src / "sampled_longest2.jsonl").write_text("\n".join(json.dumps(x) for x in items))
    if with_features:
        rng = np.random.default_rng(0)
        for s in cls_ids:
            write_feature(root, "dinov2", "cls", s, (rng.standard_normal((1, 1, 257, 1536)) * 3).astype(np.float32))
        for i, t in enumerate(csr_tokens):
            write_feature(root, "llama3", "csr", f"Q{i}", rng.standard_normal((1, 1, t, 4096)).astype(np.float32))
    return root


@pytest.fixture
def data_root(tmp_path):
    return make_root(tmp_path / "data")


def resum(bundle: Path) -> None:
    """A consistent tampering: SHA256SUMS rewritten to match the edited files of a bundle."""
    from harness.bundle import sums_text

    (bundle / "SHA256SUMS").write_text(sums_text(bundle))


@pytest.fixture(scope="session")
def complete_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle directory, data root): a packed, evaluated zlib run of a two-sample cls data root at
    every rate point (demo heads), a complete result a crosscheck passes. Copy it before editing."""
    from harness.cli import main
    from harness.runner import RunRequest, execute

    base = tmp_path_factory.mktemp("complete-bundle")
    root = make_root(base / "data")
    execute(RunRequest(codec="zlib", tasks=["cls"], data_root=root, out=base / "run", jobs=1, progress=False))
    assert main(["evaluate", str(base / "run"), "--heads", "demo"]) == 0
    assert main(["pack", str(base / "run"), "--out", str(base / "bundle")]) == 0
    return base / "bundle", root


def pytest_sessionfinish(session, exitstatus):
    import shutil

    shutil.rmtree(os.environ["FCM_HARNESS_CACHE"], ignore_errors=True)
