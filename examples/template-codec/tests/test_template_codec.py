"""The template plugin, as a third party's package: installed by pip, discovered by the harness,
conformance-tested and run end to end. Copy these tests with the package."""

from __future__ import annotations

import csv
import lzma

import pytest

from harness.cli import main
from harness.ctc import load_ctc
from harness.registry import default_registry
from harness.testing import check_codec

pytest.importorskip("template_codec", reason="the template plugin is not installed: pip install --no-deps "
                                             "./examples/template-codec (CI does)")
from template_codec import SPEC  # noqa: E402
from template_codec.codec import FORMAT, HEADER, MAGIC  # noqa: E402


def test_the_harness_discovers_the_installed_package():
    registered = default_registry().codec("template-levels")
    assert registered.spec == SPEC
    assert registered.source.distribution == "fcm-harness-template-codec"


def test_options_are_checked_by_the_harness():
    from harness import CodecError

    with pytest.raises(CodecError, match="template-levels: option preset='12' must be at most 9"):
        SPEC.open({"preset": "12"})
    with pytest.raises(CodecError, match="template-levels: unknown option 'prest'; did you mean 'preset'"):
        SPEC.open({"prest": "1"})


@pytest.mark.parametrize("ctc_name", ["paper", "mini"])
def test_the_codec_conforms(ctc_name):
    ctc = load_ctc(ctc_name)
    # a header claiming a 1x1 frame over 64 MiB of lzma zeros: the decoder must stop at 2 bytes
    bomb = HEADER.pack(MAGIC, FORMAT, 16, 1, 1) + lzma.compress(bytes(64 << 20))
    report = check_codec(SPEC, ctc=ctc, fresh_process=ctc_name == "paper", hostile=[bomb])
    assert all(len(bits) == len(SPEC.rate_points) for bits in report.bits.values())


def test_a_run_on_the_demo_data_codes_and_scores(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--codec", "template-levels", "--task", "cls", "--limit", "2", "--out", str(out),
                 "--jobs", "1"]) == 0, capsys.readouterr().err
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(SPEC.rate_points) and {r["status"] for r in rows} == {"ok"}
    for row in rows:  # the rate is the bytes the harness counted, nothing else
        assert int(row["bits"]) == 8 * (out / row["bitstream_path"]).stat().st_size
    mean_bpfp = {float(p): sum(float(r["bpfp"]) for r in rows if float(r["rate_point"]) == p) / 2
                 for p in SPEC.rate_points}
    assert [mean_bpfp[p] for p in SPEC.rate_points] == sorted(mean_bpfp.values(), reverse=True)
    with open(out / "metrics.csv", newline="") as f:
        assert any(r["task"] == "cls" for r in csv.DictReader(f))  # the task head scored the decodes
