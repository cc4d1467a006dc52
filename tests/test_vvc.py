"""The vvc plugin, for real: VVenC and FFmpeg's native VVC decoder from imageio-ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.errors import CodecError
from harness.registry import Registry
from harness.testing import check_codec
from harness_plugins import vvc
from harness_plugins.vvc_sps import parse_sps

pytestmark = pytest.mark.skipif(vvc.availability() is not None, reason=f"{vvc.availability()}")


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.standard_normal((h, w)), axis=1) * 3
    return np.clip(512 + smooth + rng.standard_t(4, (h, w)) * 20, 0, 1023).astype(np.uint16)


@pytest.mark.slow
def test_conformance_on_small_frames_all_qps():
    spec = Registry().codec("vvc").spec
    report = check_codec(spec, tasks=("cls", "csr", "tti"), shapes={"cls": (1, 1, 33, 64), "csr": (1, 1, 17, 128),
                                                                     "tti": (1, 16, 16, 16)}, fresh_process=True)
    assert all(len(bits) == 5 for bits in report.bits.values())


@pytest.mark.parametrize("h,w", [(33, 64), (34, 62), (17, 130)])
def test_odd_and_even_sizes_come_back_exactly_sized(h, w):
    codec = vvc.make_codec({})
    stream = codec.encode(frame(h, w), 22, "cls")
    decoded = codec.decode(stream)
    assert decoded.shape == (h, w) and decoded.dtype == np.uint16
    sps = parse_sps(stream)
    assert (sps.chroma_format_idc, sps.width, sps.height) == (0, w, h)  # a real 4:0:0 stream


def test_high_rate_keeps_more_than_low_rate():
    f = frame(64, 128)
    codec = vvc.make_codec({})
    errors = []
    for qp in (22, 42):
        decoded = codec.decode(codec.encode(f, qp, "cls")).astype(float)
        errors.append(np.mean((decoded - f) ** 2))
    assert 4 * errors[0] < errors[1]  # QP 22 keeps far more of the frame than QP 42


def test_checked_stream_equals_the_plain_encoder_output():
    f = frame(40, 96, seed=3)
    checked = vvc.make_codec({}).encode(f, 27, "cls")
    plain = vvc.make_codec({"check_recon": "0"}).encode(f, 27, "cls")
    assert checked == plain  # the picture-hash SEI used for the check is not in the counted stream


def test_picture_hash_mismatch_is_caught(monkeypatch):
    codec = vvc.make_codec({})
    real = codec._decode

    def tampered(bitstream, crop):
        out = real(bitstream, crop).copy()
        out[0, 0] ^= 1
        return out

    monkeypatch.setattr(codec, "_decode", tampered)
    codec.encode(frame(16, 32), 32, "cls")  # the check is not part of the timed encode
    with pytest.raises(Exception, match="differs from the encoder's reconstruction"):
        codec.after_encode()


def test_bad_options_and_qps():
    spec = vvc.harness_codecs()[0]
    with pytest.raises(Exception, match="vvc: option preset='fastest' must be one of faster, fast, medium"):
        spec.open({"preset": "fastest"})
    with pytest.raises(Exception, match="vvc: unknown option 'qp'"):
        spec.open({"qp": "3"})
    with pytest.raises(Exception, match="vvc: option threads='0' must be at least 1"):
        spec.open({"threads": "0"})
    with pytest.raises(Exception, match="QP must be an integer 0..63"):
        spec.open({}).encode(frame(8, 8), 22.5, "cls")


@pytest.mark.slow
def test_run_on_demo_tti_all_qps(tmp_path):
    from harness.runner import RunRequest, execute
    outcome = execute(RunRequest(codec="vvc", tasks=["tti"], limit=2, out=tmp_path / "run", progress=False, jobs=2))
    table = outcome.table
    assert len(table) == 10 and (table.status == "ok").all()
    by_qp = table.groupby("rate_point").bpfp.mean()
    assert list(by_qp.index) == [22, 27, 32, 37, 42] and by_qp.is_monotonic_decreasing
    from harness.verify import verify_run
    assert all(r.ok for r in verify_run(outcome.run_dir, workers=2))


def test_encoder_command_line_for_a_preset_and_tool_set():
    args = vvc.encoder_args("ffmpeg", 1536, 257, 32, "medium", 1, Path("out.266"), False, ("MTS=1", "LFNST=1"))
    assert args[args.index("-preset") + 1] == "medium"
    assert args[args.index("-qp") + 1] == "32" and args[args.index("-qpa") + 1] == "0"
    assert args[args.index("-g") + 1] == "1" and args[args.index("-threads") + 1] == "1"
    assert args[args.index("-vvenc-params") + 1] == "ChromaFormatIDC=400:IntraQPOffset=0:BIM=0:MTS=1:LFNST=1"
    checked = vvc.encoder_args("ffmpeg", 8, 8, 22, "fast", 1, Path("o"), True)
    assert checked[checked.index("-vvenc-params") + 1].endswith("BIM=0:SEIDecodedPictureHash=1")


@pytest.mark.parametrize("params,message", [
    ("MTS", "bad params entry 'MTS'"),
    ("MTS=1;rm", "bad params entry"),
    ("IntraQPOffset=-3", "may not change IntraQPOffset"),
    ("chromaformatidc=420", "may not change chromaformatidc"),
])
def test_params_are_checked(params, message):
    with pytest.raises(CodecError, match=message):
        vvc.make_codec({"params": params})


def test_params_take_vvenc_names_with_underscores():
    # VTM's AI config sets deblocking offsets; VVenC spells them with "_div2" and negative values
    assert vvc.parse_params("LoopFilterBetaOffset_div2=-2:LoopFilterTcOffset_div2=-5") == (
        "LoopFilterBetaOffset_div2=-2", "LoopFilterTcOffset_div2=-5")
    with pytest.raises(CodecError, match="bad params entry"):
        vvc.parse_params("_x=1")


def test_params_reach_the_encoder():
    f = frame(64, 64)
    plain = vvc.make_codec({"check_recon": "0"}).encode(f, 32, "cls")
    tuned = vvc.make_codec({"check_recon": "0", "params": "MTS=0:LFNST=0:ALF=0"})
    stream = tuned.encode(f, 32, "cls")
    assert stream != plain  # the switches changed what was coded
    assert tuned.decode(stream).shape == f.shape


def test_the_default_codes_with_the_tuned_switches_and_params_replace_them():
    default = vvc.make_codec({})
    assert default.preset == "fast" and default.params == vvc.parse_params(vvc.TUNED_PARAMS)
    args = vvc.encoder_args("ffmpeg", 384, 257, 32, default.preset, 1, Path("o"), False, default.params)
    line = args[args.index("-vvenc-params") + 1]
    assert line == ("ChromaFormatIDC=400:IntraQPOffset=0:BIM=0:TransformSkip=1:TransformSkipLog2MaxSize=5:"
                    "LoopFilterBetaOffset_div2=-2:LoopFilterTcOffset_div2=-5:NumIntraModesFullRD=-1:"
                    "ISP=3:CTUSize=128:MinQTISlice=8")
    assert vvc.make_codec({"params": ""}).params == ()  # the bare preset
    assert vvc.make_codec({"params": "MTS=1"}).params == ("MTS=1",)


def test_a_stream_of_many_pictures_is_decoded_to_its_first_without_reading_the_rest(tmp_path):
    """A hostile bundle's 'bitstream' of many pictures: the decoder hands over one picture's bytes, not
    all of them (150 pictures once took the checker to 4.2 GB)."""
    from harness import run_tool

    h, w, count = 64, 96, 40
    pictures = b"".join(vvc.yuv420_input(frame(h, w, seed)) for seed in range(count))
    out = tmp_path / "many.vvc"
    args = vvc.encoder_args(vvc.ffmpeg_exe(), w, h, 37, "faster", 1, out, False)
    run_tool(args, stdin=pictures, timeout=120)
    decoded = run_tool(vvc.decoder_args(vvc.ffmpeg_exe()), stdin=out.read_bytes(), timeout=120)
    assert len(decoded) < 2 * h * w * 2  # one 10-bit picture (and a header), not forty
    codec = vvc.make_codec({})
    assert codec.decode(out.read_bytes()).shape == (h, w)
