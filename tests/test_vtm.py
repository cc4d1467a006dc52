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


# ---------------------------------------------------------------- stand-ins for VTM-23.3's EncoderApp/DecoderApp

ENCODER_BANNER = "VVCSoftware: VTM Encoder Version 23.3 [Linux][GCC 12.2.0][64 bit] [SIMD=AVX2] "
DECODER_BANNER = "VVCSoftware: VTM Decoder Version 23.3 [Linux][GCC 12.2.0][64 bit] [SIMD=AVX2] "
# the end of VTM-23.3's output for a 64x9 frame at QP 32 (all intra, 4:0:0), as printed
SUMMARY = """
Memory Usage: VmPeak= 254880 KB ( 0.2 GiB ),  VmHWM= 118288 KB ( 0.1 GiB )

LayerId  0
\tTotal Frames |  Bitrate      Y-PSNR   
\t1            a  0.3600       31.3515  

 finished @ Thu Dec  3 07:56:39 2026
 Total Time:        0.470 sec. [user]        7.453 sec. [elapsed]
"""
POC_LINE = ("POC    0 LId:  0 TId: 0 ( IDR_N_LP, I-SLICE, QP 32 )       2880 bits [Y 31.3515 dB    U 0.0000 dB    "
            "V 0.0000 dB] [ET     7 ] [L0] [L1]")


def _stand_ins(folder: Path, encoder_banner: str = ENCODER_BANNER, decoder_banner: str = DECODER_BANNER,
               decoder_output: str = "same") -> vtm.VtmTools:
    """Shell scripts that behave like VTM: banner first, -b/-o files; the decoder outputs the encoder's input
    (`same`) or zeros (`zeros`), and counts its runs in decoder-runs."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder, decoder, cfg = folder / "EncoderAppStatic", folder / "DecoderAppStatic", folder / "encoder_intra_vtm.cfg"
    encoder.write_text(f"""#!/bin/sh
echo ""
echo "{encoder_banner}"
while [ $# -gt 0 ]; do case "$1" in -i) in=$2;; -o) rec=$2;; -b) out=$2;; esac; shift; done
[ -n "$out" ] || exit 0
printf 'BITS' > "$out"
cp "$in" "{folder}/last.yuv"
[ -n "$rec" ] && cp "$in" "$rec"
echo "TOOL CFG: IBD:0 HAD:1 RDQ:1 RDQTS:1 LQP:0 SQP:0 ASR:0"
echo " started @ Thu Dec  3 07:56:31 2026"
echo "{POC_LINE}"
printf '%s' '{SUMMARY}'
""")
    copy = f'cp "{folder}/last.yuv" "$out"' if decoder_output == "same" else 'head -c "$(wc -c < "{0}/last.yuv")" /dev/zero > "$out"'.format(folder)
    decoder.write_text(f"""#!/bin/sh
echo ""
echo "{decoder_banner}"
while [ $# -gt 0 ]; do case "$1" in -b) in=$2;; -o) out=$2;; esac; shift; done
[ -n "$in" ] || exit 0
echo run >> "{folder}/decoder-runs"
{copy}
echo "POC    0 LId:  0 TId: 0 ( IDR_N_LP, I-SLICE, QP 32 ) [DT  0.001] [L0] [L1]"
""")
    cfg.write_text("# stand-in\n")
    encoder.chmod(0o755)
    decoder.chmod(0o755)
    return vtm.VtmTools(encoder, decoder, cfg)


def _options(tools: vtm.VtmTools, **extra: str) -> dict[str, str]:
    return {"encoder": str(tools.encoder), "decoder": str(tools.decoder), "cfg": str(tools.cfg), **extra}


def _decoder_runs(tools: vtm.VtmTools) -> int:
    runs = tools.encoder.parent / "decoder-runs"
    return len(runs.read_text().splitlines()) if runs.exists() else 0


@pytest.fixture
def sps_of_frame(monkeypatch):
    """The stand-in bitstream has no SPS: the decoder is told the frame size by the test."""
    from types import SimpleNamespace

    size = {}
    monkeypatch.setattr(vtm, "parse_sps", lambda stream: SimpleNamespace(**size))
    return size


def test_version_banners_of_vtm_23_3_are_parsed():
    assert vtm.parse_version(ENCODER_BANNER) == "23.3"
    assert vtm.parse_version(DECODER_BANNER) == "23.3"
    assert vtm.parse_version(f"\n{ENCODER_BANNER}\nInput File : x.yuv\n") == "23.3"
    assert vtm.parse_version("VVCSoftware: VTM Encoder Version 23.10-rc1 [Linux]") == "23.10-rc1"
    assert vtm.parse_version("HM software: Encoder Version [16.20]") == ""


def test_version_is_recorded_in_provenance(tmp_path):
    tools = _stand_ins(tmp_path / "vtm")
    facts = vtm.provenance(_options(tools))
    assert facts["vtm_version"] == "23.3" and facts["vtm_decoder_version"] == "23.3"


def test_a_vtm_that_is_not_the_ctcs_version_is_refused_unless_told(tmp_path):
    from harness import CodecError

    tools = _stand_ins(tmp_path / "vtm", encoder_banner=ENCODER_BANNER.replace("23.3", "22.0"),
                       decoder_banner=DECODER_BANNER.replace("23.3", "22.0"))
    with pytest.raises(CodecError, match=r"EncoderApp .* is VTM 22\.0; the CTC's is VTM 23\.3.*-o vtm_version=22\.0"):
        vtm.make_codec(_options(tools))
    assert isinstance(vtm.make_codec(_options(tools, vtm_version="22.0")), vtm.VtmCodec)
    assert isinstance(vtm.make_codec(_options(tools, vtm_version="any")), vtm.VtmCodec)
    with pytest.raises(CodecError, match=r"is VTM 22\.0, not the VTM 22\.1 -o vtm_version asks for"):
        vtm.make_codec(_options(tools, vtm_version="22.1"))
    other_decoder = _stand_ins(tmp_path / "vtm2", decoder_banner=DECODER_BANNER.replace("23.3", "23.4"))
    with pytest.raises(CodecError, match=r"DecoderApp .* is VTM 23\.4"):
        vtm.make_codec(_options(other_decoder))
    silent = _stand_ins(tmp_path / "vtm3", encoder_banner="some encoder")
    with pytest.raises(CodecError, match="prints no VTM version banner"):
        vtm.make_codec(_options(silent))


def test_reconstruction_check_runs_after_encode_outside_the_timer(tmp_path, sps_of_frame):
    from harness import CodecError

    frame = np.arange(64, dtype=np.uint16).reshape(8, 8)
    sps_of_frame.update(height=8, width=8)
    tools = _stand_ins(tmp_path / "vtm")
    codec = vtm.make_codec(_options(tools))
    assert codec.encode(frame, 32, "cls") == b"BITS"
    assert _decoder_runs(tools) == 0  # encode ran the encoder only
    codec.after_encode()
    assert _decoder_runs(tools) == 1
    codec.after_encode()  # nothing left to check
    assert _decoder_runs(tools) == 1
    broken = vtm.make_codec(_options(_stand_ins(tmp_path / "bad", decoder_output="zeros")))
    broken.encode(frame, 32, "cls")
    with pytest.raises(CodecError, match="differs from EncoderApp's reconstruction"):
        broken.after_encode()


def test_a_run_keeps_vtms_log_summary_and_version(tmp_path, data_root, sps_of_frame, monkeypatch):
    import json

    from harness.runner import RunRequest, execute

    sps_of_frame.update(height=257, width=1536)
    tools = _stand_ins(tmp_path / "vtm")
    for var, path in ((vtm.ENV_ENCODER, tools.encoder), (vtm.ENV_DECODER, tools.decoder), (vtm.ENV_CFG, tools.cfg)):
        monkeypatch.setenv(var, str(path))
    outcome = execute(RunRequest(codec="vtm", tasks=["cls"], rate_points=[32], limit=1, data_root=data_root,
                                 out=tmp_path / "run", jobs=1, progress=False))
    assert (outcome.table.status == "ok").all(), outcome.table.error.tolist()
    logs = list((tmp_path / "run" / "logs" / "cls" / "qp32").glob("*.txt"))
    assert len(logs) == 1
    summary = logs[0].read_text()
    assert summary.splitlines() == [ENCODER_BANNER.strip(), POC_LINE, "LayerId  0",
                                    "\tTotal Frames |  Bitrate      Y-PSNR", "\t1            a  0.3600       31.3515",
                                    " Total Time:        0.470 sec. [user]        7.453 sec. [elapsed]"]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["codec"]["tools"]["vtm_version"] == "23.3"
    from harness.curves import run_description  # what a promoted anchor says: the version, no local paths
    described = run_description(meta)
    assert "vtm_version 23.3" in described and str(tmp_path) not in described


def test_tools_given_as_options_make_vtm_available(tmp_path, monkeypatch):
    from harness.registry import Registry
    for name in ("HARNESS_VTM_DIR", "HARNESS_VTM_ENCODER", "HARNESS_VTM_DECODER", "HARNESS_VTM_CFG"):
        monkeypatch.delenv(name, raising=False)
    spec = Registry().codec("vtm").spec
    assert spec.missing() and "EncoderApp" in spec.missing()
    tools = {}
    for key in ("encoder", "decoder", "cfg"):
        tools[key] = str(tmp_path / key)
        (tmp_path / key).write_text("")
    assert spec.missing(tools) is None  # -o encoder=... -o decoder=... -o cfg=... alone is enough
