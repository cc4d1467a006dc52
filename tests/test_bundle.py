"""`harness pack`: a deterministic, self-describing submission bundle (directory and tar)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import tarfile

import pytest

from harness.bundle import extract_archive, scrub
from harness.cli import main
from harness.formats.manifest import read_manifest
from harness.runner import RunRequest, execute


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    """A zlib run of two demo cls samples at two rate points, with task metrics."""
    out = tmp_path_factory.mktemp("packrun") / "run"
    execute(RunRequest(codec="zlib", tasks=["cls"], limit=2, rate_points=[0, 3], out=out, jobs=1, progress=False))
    assert main(["evaluate", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def bundle(evaluated_run, tmp_path_factory) -> Path:
    meta = tmp_path_factory.mktemp("meta") / "meta.toml"
    meta.write_text('proponent = "Lab A"\ncontact = "a@example.org"\nlicense = "CC-BY-4.0"\n')
    out = tmp_path_factory.mktemp("bundles") / "zlib-demo"
    assert main(["pack", str(evaluated_run), "--out", str(out), "--meta", str(meta)]) == 0
    return out


def test_packing_twice_gives_identical_bytes(evaluated_run, bundle, tmp_path):
    again = tmp_path / "elsewhere" / "other-name"
    assert main(["pack", str(evaluated_run), "--out", str(again)]) == 0
    first = (bundle.parent / "zlib-demo.tar").read_bytes()
    second = (again.parent / "other-name.tar").read_bytes()
    # the submitter fields differ (no --meta the second time): only manifest.json and SHA256SUMS may differ
    assert main(["pack", str(evaluated_run), "--out", str(again), "--meta",
                 str(next((bundle.parent.parent).glob("meta*/meta.toml")))]) == 0
    assert (again.parent / "other-name.tar").read_bytes() == first
    assert second != first


def test_manifest_describes_the_run(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == "fcm-harness-bundle/2"
    assert manifest["ctc"]["name"] == "fcm-lm-paper" and len(manifest["ctc"]["sha256"]) == 64
    assert read_manifest(bundle).codec.name == "zlib"  # the one typed reader takes what the one writer wrote
    assert manifest["dataset"]["name"] == "demo-v3" and set(manifest["dataset"]["sample_lists"]) == {"cls"}
    assert manifest["codec"]["name"] == "zlib" and manifest["codec"]["plugin"]["distribution"] == "fcm-harness"
    assert manifest["submitter"] == {"contact": "a@example.org", "licence": "CC-BY-4.0", "proponent": "Lab A"}
    assert manifest["contents"]["bitstreams"] == 4 and manifest["model_files"] == []
    bd = json.loads((bundle / "bd-rates.json").read_text())
    assert {(c["anchor"], c["on"]) for c in bd["comparisons"]} == {
        (a, on) for a in ("paper-vtm", "paper-hyperprior") for on in ("metric", "psnr")}
    assert all(t["test_points"] == 2 for c in bd["comparisons"] for t in c["tasks"].values())


def test_sums_cover_every_file_and_no_machine_path_travels(bundle, evaluated_run):
    listed = {}
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == files and "manifest.json" in files
    assert all(hashlib.sha256((bundle / n).read_bytes()).hexdigest() == d for n, d in listed.items())
    root = str(evaluated_run.parent.parent)  # the test's temporary folders
    for path in bundle.rglob("*"):
        if path.is_file() and path.suffix != ".bin":
            assert root not in path.read_text(errors="replace"), path
    assert json.loads((bundle / "run.json").read_text())["dataset"]["root"] == ""


def test_the_archive_holds_the_directory(bundle, tmp_path):
    archive = bundle.parent / "zlib-demo.tar"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(m.name.startswith("bundle") and m.mtime == 946684800 and m.uid == 0 for m in members)
    unpacked = extract_archive(archive, tmp_path / "x")
    for path in bundle.rglob("*"):
        if path.is_file():
            assert (unpacked / path.relative_to(bundle)).read_bytes() == path.read_bytes()


def test_a_hostile_archive_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("bundle/../../escape")
        tar.addfile(info)
    with pytest.raises(Exception, match="not a plain path under bundle/"):
        extract_archive(archive, tmp_path / "x")
    assert not (tmp_path / "escape").exists()


def test_meta_with_an_unknown_field_is_one_line(evaluated_run, tmp_path, capsys):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"proponent": "x", "licens": "MIT"}))
    assert main(["pack", str(evaluated_run), "--out", str(tmp_path / "b"), "--meta", str(meta)]) == 1
    assert "licens" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))


def test_scrub_keeps_words_and_urls():
    assert scrub("N/A, 1/2, https://x.org/a and /home/me/run") == "N/A, 1/2, https://x.org/a and <path>"
    assert scrub(["--out", "/home/lab/runs/x"]) == ["--out", "<path>"]
