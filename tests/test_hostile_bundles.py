"""A stranger's bundle can neither break, fool nor run code in the crosscheck.

Each case is an attack a hostile (or careless) proponent can make with a consistently re-hashed
bundle: the crosscheck must end in a FAIL row naming the file and field (or refuse to take the
bundle's word), always write crosscheck.json, and never hang, traceback or run the bundle's code.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import shutil
import tarfile

import pytest

from harness.bundle import extract_archive
from harness.cli import main
from harness.errors import RunError
from harness.formats.crosscheck import REQUIRED_CHECKS, read_report
from harness.options import coding_options
from harness.results import collect_records, records_frame

from conftest import resum


DATA: dict[str, Path] = {}


@pytest.fixture(scope="module")
def packed(complete_bundle) -> Path:
    """An honest, complete zlib bundle of a two-sample cls data root (every rate point), evaluated."""
    bundle, DATA["root"] = complete_bundle
    return bundle


@pytest.fixture
def bundle(packed, tmp_path) -> Path:
    target = tmp_path / "b" / "bundle"
    shutil.copytree(packed, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def rewrite_results(bundle: Path) -> None:
    """results.csv rebuilt from the (edited) records, so only a re-measurement can tell."""
    (bundle / "results.csv").write_text(records_frame(collect_records(bundle)).to_csv(index=False))


def check(bundle: Path, capsys, *extra: str, data: bool = True) -> tuple[int, dict, str]:
    args = ["crosscheck", str(bundle), "--jobs", "1", "--heads", "demo"]
    args += ["--data-root", str(DATA["root"])] if data else []
    code = main([*args, *extra])
    out = capsys.readouterr()
    report = read_report(bundle.parent / "bundle.crosscheck" / "crosscheck.json")  # always written, typed
    return code, {c.name: c for c in report.checks}, out.out + out.err


def test_an_honest_copy_passes_whatever_its_file_dates(bundle, capsys):
    for path in sorted((bundle / "records").rglob("*.json")):  # records newer than results.csv (cp -r)
        os.utime(path, (path.stat().st_mtime + 100, path.stat().st_mtime + 100))
    code, checks, out = check(bundle, capsys)
    assert code == 0 and {c.verdict for c in checks.values()} == {"pass"}, out
    assert set(checks) == set(REQUIRED_CHECKS)


# ---------------------------------------------------------------- nothing in a bundle chooses what runs


def test_options_naming_programs_or_local_settings_are_never_taken_from_a_bundle():
    from harness_plugins.vtm import OPTIONS

    given = {"decoder": "/usr/bin/python3", "encoder": "/tmp/x", "cfg": "/tmp/c", "log_dir": "/tmp/l",
             "vtm_version": "any", "timeout": "1e9", "check_recon": "0", "unknown": "1"}
    kept, ignored = coding_options(OPTIONS, given)
    assert kept == {}
    assert ignored == sorted(given)


def test_a_bundle_option_that_names_a_program_is_ignored_and_reported(bundle, capsys):
    for name, keys in (("manifest.json", ("codec", "options")), ("run.json", ("run_key", "codec_options"))):
        edit_json(bundle / name, lambda d, keys=keys: d[keys[0]][keys[1]].update(decoder="/usr/bin/python3"))
    resum(bundle)
    code, checks, out = check(bundle, capsys)
    assert code == 0, out
    assert "not taken from the bundle" in checks["plugin"].summary and "decoder" in checks["plugin"].summary
    report = read_report(bundle.parent / "bundle.crosscheck" / "crosscheck.json")
    assert report.options_ignored == ("decoder",) and dict(report.options_used) == {}


def test_a_ctc_shipped_inside_the_bundle_is_never_used(bundle, capsys):
    from harness.ctc import builtin_ctc_dir, hash_directory

    own = bundle / "ctc"
    shutil.copytree(builtin_ctc_dir("paper"), own)
    (own / "ctc.toml").write_text((own / "ctc.toml").read_text() + "\n# the proponent's own conditions\n")
    sha = hash_directory(own)
    edit_json(bundle / "manifest.json", lambda d: d["ctc"].update(sha256=sha))
    edit_json(bundle / "run.json", lambda d: (d["ctc"].update(sha256=sha, root=str(own)),
                                              d["run_key"].update(ctc_sha256=sha)))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and checks["manifest"].verdict == "fail"
    assert "not one shipped here" in checks["manifest"].summary
    assert all(checks[name].verdict == "skip" for name in ("plugin", "decode", "metrics", "bd-rates"))


def test_an_empty_ctc_hash_is_refused_not_guessed(bundle, capsys):
    edit_json(bundle / "manifest.json", lambda d: d["ctc"].update(sha256=""))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and "field 'ctc.sha256'" in checks["manifest"].summary


# ---------------------------------------------------------------- archives


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("members, why", [
    ([_file("bundle/../escaped")], "not a plain path"),
    ([_file("/tmp/absolute")], "not a plain path"),
    ([_file("other/file")], "not a plain path"),
    ([_special("bundle/link", tarfile.SYMTYPE, "/etc/passwd")], "not a plain file or folder"),
    ([_special("bundle/hard", tarfile.LNKTYPE, "bundle/x")], "not a plain file or folder"),
    ([_special("bundle/dev", tarfile.CHRTYPE)], "not a plain file or folder"),
    ([_special("bundle/fifo", tarfile.FIFOTYPE)], "not a plain file or folder"),
    ([_file("bundle/a"), _file("bundle/a")], "appears twice"),
    ([_file("bundle/" + "/".join("d" * 9) + "/f")], "nested more than"),
    ([_file("bundle/big", b"x" * 2048)], "unpacks to more than"),
], ids=["traversal", "absolute", "outside-root", "symlink", "hardlink", "device", "fifo", "duplicate", "deep",
        "huge"])
def test_archive_members_that_escape_or_are_not_plain_files_are_refused(tmp_path, members, why):
    archive = _tar(tmp_path / "evil.tar", members)
    with pytest.raises(RunError, match=why):
        extract_archive(archive, tmp_path / "out", limit=1024)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out" / "bundle" / "link").exists()


def test_a_member_name_that_is_not_utf8_is_a_failed_check_not_a_traceback(tmp_path, capsys):
    info = tarfile.TarInfo("bundle/x")
    info.size = 1
    with open(tmp_path / "bundle.tar", "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT,
                                                                  encoding="latin-1") as tar:
        info.name = "bundle/caf\udce9"  # a latin-1 byte the UTF-8 reader cannot decode
        tar.addfile(info, io.BytesIO(b"x"))
    code = main(["crosscheck", str(tmp_path / "bundle.tar")])
    report = read_report(tmp_path / "bundle.crosscheck" / "crosscheck.json")
    assert code == 1 and report.verdict == "fail" and "not UTF-8" in report.checks[0].summary


# ---------------------------------------------------------------- files that hang or flood


def test_a_fifo_as_run_json_or_metrics_fails_without_hanging(bundle, capsys):
    for name in ("run.json", "metrics.csv"):
        (bundle / name).unlink()
        os.mkfifo(bundle / name)
    code, checks, _ = check(bundle, capsys)
    assert code == 1
    assert any("run.json (a FIFO)" in p for p in checks["integrity"].problems)
    assert checks["records"].verdict == "skip" and "links or special files" in checks["records"].summary


def test_a_linked_records_folder_is_never_walked(bundle, capsys, tmp_path):
    shutil.rmtree(bundle / "records")
    (bundle / "records").symlink_to(Path("/usr"))
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and any("records (a link)" in p for p in checks["integrity"].problems)
    assert len(checks["integrity"].problems) < 50  # one line for the link, not a listing of /usr


# ---------------------------------------------------------------- lies that pass with every hash recomputed


def test_a_run_json_that_contradicts_itself_fails(bundle, capsys):
    edit_json(bundle / "run.json", lambda d: d["codec"].update(options={"level": "1"}))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and "'codec.options'" in checks["manifest"].summary
    assert "contradicts 'run_key.codec_options'" in checks["manifest"].summary


def test_a_subset_claimed_as_the_whole_fails_unless_accepted(bundle, capsys):
    for path in sorted((bundle / "records" / "cls").rglob("img_b.json")):
        record = json.loads(path.read_text())
        (bundle / record["bitstream_path"]).unlink()
        path.unlink()
    rewrite_results(bundle)
    edit_json(bundle / "manifest.json", lambda d: d["contents"].update(records=5, bitstreams=5))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and checks["coverage"].verdict == "fail"
    assert "covers only part of its sample list" in checks["coverage"].problems[0]
    assert "1 of 2" in checks["coverage"].problems[0]
    code, checks, _ = check(bundle, capsys, "--accept", "subset")
    assert checks["coverage"].verdict == "warn" and "1 of 2 samples" in checks["coverage"].summary


def _edit_records(bundle: Path, change) -> None:
    for path in sorted((bundle / "records").rglob("*.json")):
        edit_json(path, change)
    rewrite_results(bundle)


def test_a_record_without_its_feature_hash_fails(bundle, capsys):
    _edit_records(bundle, lambda r: r.update(feature_sha256=""))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and "field 'feature_sha256' is empty" in checks["dataset"].problems[0]


def test_feature_mse_divided_by_ten_fails_the_re_measurement(bundle, capsys):
    _edit_records(bundle, lambda r: r.update(mse=r["mse"] / 10))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and checks["distortion"].verdict == "fail"
    assert "field 'mse'" in checks["distortion"].problems[0] and "re-measured" in checks["distortion"].problems[0]


def test_one_samples_bitstreams_reused_for_another_fail(bundle, capsys):
    for folder in sorted((bundle / "records" / "cls").iterdir()):
        a, b = json.loads((folder / "img_a.json").read_text()), json.loads((folder / "img_b.json").read_text())
        shutil.copyfile(bundle / a["bitstream_path"], bundle / b["bitstream_path"])
        b.update({k: a[k] for k in ("bytes", "bits", "bpfp", "bitstream_sha256", "recon_sha256", "mse")})
        (folder / "img_b.json").write_text(json.dumps(b, indent=2, sort_keys=True) + "\n")
    rewrite_results(bundle)
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1 and checks["distortion"].verdict == "fail"
    assert any("img_b" in p for p in checks["distortion"].problems)


def test_an_unknown_dataset_is_a_failure_unless_accepted(bundle, capsys):
    edit_json(bundle / "manifest.json", lambda d: d["dataset"].update(name="oops"))
    edit_json(bundle / "run.json", lambda d: d["dataset"].update(name="oops"))
    resum(bundle)
    code, checks, _ = check(bundle, capsys, data=False)
    assert code == 1 and checks["dataset"].verdict == "fail" and "--data-root" in checks["dataset"].summary
    code, checks, _ = check(bundle, capsys, "--accept", "no-dataset", data=False)
    assert code == 0 and checks["dataset"].verdict == "skip" and checks["metrics"].verdict == "skip"


def test_a_missing_plugin_says_what_to_install(bundle, capsys):
    edit_json(bundle / "manifest.json", lambda d: (d["codec"].update(name="ocq"),
                                                   d["codec"]["plugin"].update(distribution="ocq-codec",
                                                                               distribution_version="0.1"),
                                                   d["submitter"].update(url="https://example.org/ocq")))
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    assert code == 1
    summary = checks["plugin"].summary
    assert "pip install 'ocq-codec==0.1'" in summary and "https://example.org/ocq" in summary


# ---------------------------------------------------------------- malformed files end in a report


@pytest.mark.parametrize("change, field", [
    (lambda d: d.pop("codec"), "'codec' is missing"),
    (lambda d: d["codec"].update(name="../x"), "'codec.name'"),
    (lambda d: d["contents"].update(records="12"), "'contents.records'"),
    (lambda d: d.update(schema="fcm-harness-bundle/1"), "re-pack"),
], ids=["no-codec", "unsafe-name", "string-count", "old-schema"])
def test_a_malformed_manifest_is_a_fail_row_naming_the_field(bundle, capsys, change, field):
    edit_json(bundle / "manifest.json", change)
    resum(bundle)
    code, checks, out = check(bundle, capsys)
    assert code == 1 and checks["manifest"].verdict == "fail" and field in checks["manifest"].summary
    assert checks["plugin"].verdict == "skip" or field != "'codec' is missing"  # nothing read past it


def test_crosscheck_of_the_current_folder_reports_instead_of_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["crosscheck", "."])
    report = read_report(tmp_path.with_name(tmp_path.name + ".crosscheck") / "crosscheck.json")
    assert code == 1 and report.verdict == "fail"  # a report about the folder, not a traceback
    assert "SHA256SUMS" in report.checks[0].summary and report.checks[0].name == "integrity"


def test_a_reconstruction_of_another_hash_with_the_same_mse_is_not_bit_exact_not_forged(bundle, capsys):
    """A floating-point decoder on another machine: other reconstruction hashes, same distortion."""
    first = sorted((bundle / "records").rglob("*.json"))[0]
    edit_json(first, lambda r: r.update(recon_sha256="0" * 64))
    rewrite_results(bundle)
    resum(bundle)
    code, checks, out = check(bundle, capsys)
    assert code == 0, out
    assert checks["decode"].verdict == "warn" and "decoder not bit-exact here" in checks["decode"].summary
    assert "MSE here" in checks["decode"].problems[0]
    assert checks["distortion"].verdict == "pass" and checks["metrics"].verdict == "pass"


def test_an_unexpected_error_in_a_check_is_a_fail_row_and_the_report_is_written(bundle, capsys, monkeypatch):
    import harness.crosscheck as xc

    def boom(ctx, check):
        raise ValueError("a plugin's decoder returned garbage")
    monkeypatch.setattr(xc, "STEPS", tuple(xc.Step(s.name, s.needs, boom) if s.name == "distortion" else s
                                           for s in xc.STEPS))
    code, checks, out = check(bundle, capsys)
    assert code == 1 and checks["distortion"].verdict == "fail"
    assert "unexpected ValueError in the distortion check" in checks["distortion"].summary
    assert checks["bpfp"].verdict == "pass"  # the other checks went on


def test_a_full_disk_at_the_checker_is_the_checkers_problem_not_a_failed_bundle(bundle, capsys, monkeypatch):
    import harness.crosscheck as xc
    from harness.errors import OutputError

    def full(ctx, check):
        raise OutputError(f"{ctx.work}/rescore/run.json: cannot write (No space left on device)")
    monkeypatch.setattr(xc, "STEPS", tuple(xc.Step(s.name, s.needs, full) if s.name == "metrics" else s
                                           for s in xc.STEPS))
    code = main(["crosscheck", str(bundle), "--jobs", "1", "--heads", "demo", "--data-root", str(DATA["root"])])
    err = capsys.readouterr().err
    assert code == 1 and "could not finish on this machine" in err and "no verdict" in err
    assert not (bundle.parent / "bundle.crosscheck" / "crosscheck.json").exists()


def test_bd_rates_json_neither_chooses_the_method_nor_states_other_numbers(bundle, capsys):
    def change(d):
        d["method"] = "akima"
        first = d["comparisons"][0]
        task = next(iter(first["tasks"]))
        first["tasks"][task]["bd_rate_percent"] = -99.0
    edit_json(bundle / "bd-rates.json", change)
    resum(bundle)
    code, checks, _ = check(bundle, capsys)
    problems = checks["bd-rates"].problems
    assert code == 1 and any("field 'method' is 'akima'" in p for p in problems)
    assert any("field 'bd_rate_percent'" in p and "-99.0" in p for p in problems)
