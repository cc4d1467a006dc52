"""Bundles of a codec with model files (klt): the manifest lists them; a crosscheck compares the
checker's copies by name, size and sha256, and a path option of the packing machine must be given."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest

pytest.importorskip("constriction")

from harness.cli import main  # noqa: E402
from test_klt import mini_root  # noqa: E402


@pytest.fixture(scope="module")
def klt_bundle(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("kltpack")
    root = mini_root(base / "data")
    models = base / "models"
    assert main(["train", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
                 "--lambda", "4,16", "--out", str(models / "sal")]) == 0
    run = base / "run"
    assert main(["run", "--codec", "klt", "--task", "sal", "--data-root", str(root), "--ctc", "mini",
                 "--rate-points", "4,16", "--limit", "1", "-o", f"models={models}", "--out", str(run), "--jobs", "1",
                 "--no-progress", "--no-eval"]) == 0
    assert main(["pack", str(run), "--out", str(base / "bundle")]) == 0
    return base / "bundle", root, models


def test_the_manifest_lists_the_model_files_without_the_packing_path(klt_bundle):
    bundle, _, models = klt_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = manifest["model_files"]
    assert files and all(len(f["sha256"]) == 64 and f["size"] > 0 for f in files)
    assert all(sorted(f["used_by"]) == ["sal@16", "sal@4"] for f in files)
    assert {f["name"] for f in files} <= {p.name for p in (models / "sal").iterdir()}
    assert manifest["codec"]["options"] == {"models": "<path>"}
    assert str(models) not in (bundle / "manifest.json").read_text()


def run_check(bundle: Path, root: Path, *extra: str, capsys) -> tuple[int, dict]:
    code = main(["crosscheck", str(bundle), "--data-root", str(root), "--ctc", "mini", "--jobs", "1",
                 "--accept", "subset", *extra])
    capsys.readouterr()
    report = json.loads((bundle.parent / f"{bundle.name}.crosscheck" / "crosscheck.json").read_text())
    return code, {c["name"]: c for c in report["checks"]}


def test_crosscheck_needs_the_checkers_model_folder_and_compares_it(klt_bundle, tmp_path, capsys):
    bundle, root, models = klt_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    code, checks = run_check(copy, root, capsys=capsys)
    assert code == 1 and "-o models=VALUE" in checks["plugin"]["problems"][0]
    code, checks = run_check(copy, root, "-o", f"models={models}", capsys=capsys)
    assert code == 0, checks
    published = (copy.parent / "bundle.crosscheck" / "crosscheck.json").read_text()
    assert str(models) not in published and '"models": "<path>"' in published  # the checker's folders stay home
    assert checks["models"]["verdict"] == "pass" and checks["decode"]["verdict"] == "pass"
    assert checks["metrics"]["verdict"] == "skip"  # the run was not evaluated
    other = tmp_path / "models"
    shutil.copytree(models, other)
    listed = json.loads((bundle / "manifest.json").read_text())["model_files"]
    mean = other / "sal" / next(f["name"] for f in listed if f["name"].endswith(".npy"))
    data = bytearray(mean.read_bytes())
    data[-1] ^= 0x01
    mean.write_bytes(bytes(data))
    code, checks = run_check(copy, root, "-o", f"models={other}", capsys=capsys)
    assert code == 1 and checks["models"]["verdict"] == "fail"
    assert any(mean.name in p for p in checks["models"]["problems"])
