"""The vtm plugin: the CTC command line, tool look-up, and real coding when VTM is configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.registry import Registry
from harness_plugins import vtm

CONFIGURED = not isinstance(vtm.find_tools(), str)


def test_encoder_command_line_is_the_ctc_one(tmp_path):
    tools = vtm.VtmTools(Path("/x/EncoderAppStatic"), Path("/x/DecoderAppStatic"), Path("/x/encoder_intra_vtm.cfg"))
    args = vtm.encoder_args(tools, Path("in.yuv"), Path("out.bin"), 32, 1536, 257, None)
    # official vtm_baseline.py: EncoderApp -c cfg -i in -o "" -b out -q QP --ConformanceWindowMode=1
    #   -wdt W -hgt H -f 1 -fr 1 --InternalBitDepth=10 --InputBitDepth=10 --InputChromaFormat=400 --OutputBitDepth=10
    assert args == ["/x/EncoderAppStatic", "-c", "/x/encoder_intra_vtm.cfg", "-i", "in.yuv", "-o", "", "-b", "out.bin",
                    "-q", "32", "--ConformanceWindowMode=1", "-wdt", "1536", "-hgt", "257", "-f", "1", "-fr", "1",
                    "--InternalBitDepth=10", "--InputBitDepth=10", "--InputChromaFormat=400", "--OutputBitDepth=10"]
    with_recon = vtm.encoder_args(tools, Path("in.yuv"), Path("out.bin"), 32, 1536, 257, Path("rec.yuv"))
    # the reconstruction file is the only difference; it does not change the bitstream
    assert [a for a in with_recon if a != "rec.yuv"] == [a for a in args if a != ""]
    assert vtm.decoder_args(tools, Path("b.bin"), Path("d.yuv")) == ["/x/DecoderAppStatic", "-b", "b.bin", "-o", "d.yuv"]


def test_rate_points_are_the_ctc_qps(ctc):
    from harness.runner import codec_rate_points
    spec = Registry().codec("vtm").spec
    assert codec_rate_points(spec, ctc, "cls") == (22, 27, 32, 37, 42)


def test_tools_found_from_a_vtm_tree(tmp_path, monkeypatch):
    for rel in ("bin/EncoderAppStatic", "bin/DecoderAppStatic", "cfg/encoder_intra_vtm.cfg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    for var in (vtm.ENV_ENCODER, vtm.ENV_DECODER, vtm.ENV_CFG):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(vtm.ENV_DIR, str(tmp_path))
    tools = vtm.find_tools()
    assert tools == vtm.VtmTools(tmp_path / "bin/EncoderAppStatic", tmp_path / "bin/DecoderAppStatic",
                                 tmp_path / "cfg/encoder_intra_vtm.cfg")
    other = tmp_path / "MyEncoder"
    other.write_text("")
    monkeypatch.setenv(vtm.ENV_ENCODER, str(other))  # a single file overrides the tree
    assert vtm.find_tools().encoder == other
    assert vtm.find_tools({"encoder": str(tmp_path / "bin/EncoderAppStatic")}).encoder.name == "EncoderAppStatic"


def test_missing_vtm_says_what_to_install(monkeypatch):
    for var in (vtm.ENV_DIR, vtm.ENV_ENCODER, vtm.ENV_DECODER, vtm.ENV_CFG):
        monkeypatch.delenv(var, raising=False)
    message = vtm.availability()
    assert "VTM not found" in message and "HARNESS_VTM_DIR" in message and "EncoderApp" in message


def test_a_crashing_encoder_is_reported_with_its_last_lines(tmp_path):
    script = tmp_path / "EncoderApp"
    script.write_text("#!/bin/sh\necho 'reading config'\necho 'ERROR: cannot open input' >&2\nexit 3\n")
    script.chmod(0o755)
    tools = vtm.VtmTools(script, script, script)
    codec = vtm.VtmCodec(tools, timeout=30, check_recon=True, log_dir=tmp_path / "logs")
    with pytest.raises(Exception, match=r"EncoderApp: exit code 3; last output: ERROR: cannot open input \| reading config"):
        codec.encode(np.zeros((8, 8), np.uint16), 32, "cls")
    assert list((tmp_path / "logs").glob("*.log"))  # the encoder log is kept


def test_a_hung_encoder_is_killed_at_the_timeout(tmp_path):
    script = tmp_path / "EncoderApp"
    script.write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")
    script.chmod(0o755)
    codec = vtm.VtmCodec(vtm.VtmTools(script, script, script), timeout=1, check_recon=False, log_dir=None)
    with pytest.raises(Exception, match="timed out after 1 s and was killed"):
        codec.encode(np.zeros((8, 8), np.uint16), 32, "cls")


@pytest.mark.skipif(not CONFIGURED, reason="VTM not configured: set HARNESS_VTM_DIR (or HARNESS_VTM_ENCODER/"
                                            "DECODER/CFG) to a VTM-23.3 build to run the real VTM tests")
def test_real_vtm_round_trip_matches_encoder_reconstruction():
    from harness.testing import check_codec
    spec = Registry().codec("vtm").spec
    check_codec(spec, tasks=("cls",), shapes={"cls": (1, 1, 9, 64)})
