"""`harness crosscheck BUNDLE`: a copy of a packed run passes; every tampering fails naming the
file or field."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest

from harness.formats.crosscheck import REQUIRED_CHECKS
from harness.cli import main
from harness.runner import RunRequest, execute

from conftest import make_root, resum


DATA: dict[str, Path] = {}  # the data root the packed run was coded from (the checker's copy)


@pytest.fixture(scope="module")
def packed(complete_bundle) -> Path:
    """A complete zlib bundle (every listed sample at every rate point), evaluated."""
    bundle, DATA["root"] = complete_bundle
    return bundle


@pytest.fixture
def copy(packed, tmp_path) -> Path:
    target = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(packed, target)
    return target


def crosscheck(bundle: Path, capsys) -> tuple[int, dict, str]:
    return crosscheck_with(bundle, capsys)


def crosscheck_with(bundle: Path, capsys, *extra: str, root: Path | None = None) -> tuple[int, dict, str]:
    code = main(["crosscheck", str(bundle), "--jobs", "1", "--data-root", str(root or DATA["root"]), "--heads", "demo",
                 *extra])
    out = capsys.readouterr().out
    report = json.loads((bundle.parent / "bundle.crosscheck" / "crosscheck.json").read_text())
    return code, {c["name"]: c for c in report["checks"]}, out


def test_the_archive_checked_in_another_directory_passes(packed, tmp_path, capsys):
    archive = tmp_path / "bundle.tar"
    shutil.copyfile(packed.parent / "bundle.tar", archive)
    code, checks, out = crosscheck(archive, capsys)
    assert code == 0, out
    assert {c["verdict"] for c in checks.values()} == {"pass"}, checks
    assert set(checks) == set(REQUIRED_CHECKS)
    html = (tmp_path / "bundle.crosscheck" / "crosscheck.html").read_text()
    assert "Crosscheck of bundle.tar" in html and ">pass<" in html
    assert "10 of 10 bitstreams decode" in checks["decode"]["summary"]


def test_a_flipped_byte_in_a_bitstream_fails_naming_it(copy, capsys):
    path = sorted((copy / "bitstreams").rglob("*.bin"))[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    code, checks, out = crosscheck(copy, capsys)
    assert code == 1
    rel = path.relative_to(copy).as_posix()
    assert checks["integrity"]["verdict"] == "fail" and any(rel in p for p in checks["integrity"]["problems"])
    assert checks["records"]["verdict"] == "fail" and any(
        rel in p and "sha256" in p for p in checks["records"]["problems"])
    assert "FAIL  integrity" in out


def test_an_edited_metric_fails_naming_the_field(copy, capsys):
    path = copy / "metrics.csv"
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if ",shift,3," in line)
    fields = lines[row].split(",")
    fields[6] = "99.5"  # value
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    resum(copy)
    code, checks, _ = crosscheck(copy, capsys)
    assert code == 1
    assert checks["integrity"]["verdict"] == "pass"  # consistent tampering: only re-scoring can tell
    problem = checks["metrics"]["problems"][0]
    assert f"metrics.csv:{row + 1}" in problem and "field 'value'" in problem and "99.5" in problem


def test_swapped_records_fail_naming_the_file(copy, capsys):
    a, b = sorted((copy / "records" / "cls" / "shift0").glob("*.json"))
    text_a, text_b = a.read_text(), b.read_text()
    a.write_text(text_b)
    b.write_text(text_a)
    code, checks, _ = crosscheck(copy, capsys)
    assert code == 1
    assert any(a.relative_to(copy).as_posix() in p for p in checks["integrity"]["problems"])
    assert checks["records"]["verdict"] == "fail"
    assert str(a) in checks["records"]["summary"] and "sits at" in checks["records"]["summary"]


def test_a_changed_plugin_version_fails_saying_what_differs(copy, capsys):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["codec"]["version"] = "1.1"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    resum(copy)
    code, checks, _ = crosscheck(copy, capsys)
    assert code == 1
    assert checks["plugin"]["verdict"] == "fail"
    assert "'codec.version' is '1.1'; installed zlib is '1.0'" in checks["plugin"]["problems"][0]
    assert any("run.json" in p and "'codec.version'" in p for p in checks["manifest"]["problems"])


def test_a_seeded_subset_is_shown_not_passed(copy, capsys):
    code, checks, out = crosscheck_with(copy, capsys, "--samples", "1", "--seed", "3")
    report = json.loads((copy.parent / "bundle.crosscheck" / "crosscheck.json").read_text())
    metrics = checks["metrics"]
    assert code == 0 and metrics["verdict"] == "warn" and "1 seeded samples" in metrics["problems"][0], out
    assert report["verdict"] == "pass with notes"


def test_a_bundle_without_its_manifest_gets_a_failing_report(copy, capsys):
    (copy / "manifest.json").unlink()
    code, checks, _ = crosscheck(copy, capsys)
    assert code == 1 and set(checks) == set(REQUIRED_CHECKS)
    assert "manifest.json" in checks["manifest"]["summary"] and "missing" in checks["manifest"]["summary"]
    assert checks["plugin"]["verdict"] == "skip" and "manifest" in checks["plugin"]["summary"]


def test_an_edited_result_row_fails_naming_line_and_field(copy, capsys):
    path = copy / "results.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[1].split(",")
    fields[header.index("mse")] = "0.001"
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    resum(copy)
    code, checks, _ = crosscheck(copy, capsys)
    assert code == 1 and "results.csv:2: field 'mse' is 0.001" in checks["records"]["problems"][0]


def test_reports_are_never_written_into_the_bundle(copy, capsys):
    assert main(["crosscheck", str(copy), "--out", str(copy / "report")]) == 1
    assert "inside the bundle" in capsys.readouterr().err and not (copy / "report").exists()


def test_reencoding_a_seeded_subset_reproduces_the_bitstreams(copy, capsys):
    code, checks, out = crosscheck_with(copy, capsys, "--reencode", "1")
    check = checks["re-encode"]
    assert code == 0 and check["verdict"] == "pass", out
    assert check["summary"].startswith("5 bitstreams (1 seeded samples per task")  # 1 sample x 5 rate points


def test_bitstreams_another_encoder_made_decode_but_fail_reencoding(tmp_path, capsys):
    """The bundle claims zlib level 9; its bitstreams were made at level 1. They decode to the same
    reconstructions, so only re-encoding can tell."""
    run, root = tmp_path / "run", make_root(tmp_path / "data", cls_ids=("img_a",))
    execute(RunRequest(codec="zlib", tasks=["cls"], data_root=root, rate_points=[0], out=run, jobs=1,
                       progress=False, codec_options={"level": "1"}))
    assert main(["pack", str(run), "--out", str(tmp_path / "bundle")]) == 0
    bundle = tmp_path / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["codec"]["options"]["level"] = "9"
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    meta = json.loads((bundle / "run.json").read_text())
    meta["run_key"]["codec_options"]["level"] = "9"
    (bundle / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    resum(bundle)
    code, checks, out = crosscheck_with(bundle, capsys, "--reencode", "1", "--accept", "subset", root=root)
    assert code == 1 and checks["decode"]["verdict"] == "pass", out
    assert checks["re-encode"]["verdict"] == "fail"
    (problem,) = checks["re-encode"]["problems"]
    assert "records/cls/shift0/" in problem and "re-encoded here, the bitstream differs" in problem
