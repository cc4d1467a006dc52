"""The `vvc` anchor that runs everywhere: VVC intra with VVenC, decoded by FFmpeg's native decoder.

Both come inside the `imageio-ffmpeg` wheel. Settings (measured; see VVC-NOTES):
- `ChromaFormatIDC=400`: a real 4:0:0 stream, like the CTC's VTM anchor. The
  ffmpeg wrapper only accepts yuv420p10le, so the frame goes in the luma plane
  with flat chroma that the encoder then drops. (Never gray10le input: ffmpeg
  range-converts it, losing precision before coding.)
- `IntraQPOffset=0`: every preset otherwise codes intra slices at QP - 3.
- `-qpa 0` and `BIM=0`: no perceptual or block-importance QP adaptation (they
  optimize for viewers, not features); the QP is flat over the picture.
- `-g 1`, one thread per encoder: all intra; parallelism comes from the runner.
Odd sizes need no header: VVenC pads to a multiple of 8 and signals a
conformance window (in single samples for 4:0:0), which the decoder crops.
The whole Annex-B stream is counted. The stream goes to a file, never stdout:
VVenC prints configuration notes on stdout. Known limit: ffmpeg's wrapper
reserves W x H bytes for the output, so a frame needing more than 8 bits per
sample (pure 10-bit noise at QP <= 10) or a tiny frame (<= 16 samples a side)
fails with "Generic error in an external library"; CTC frames are far from it.

Encoder/decoder agreement: with `check_recon=1` (default) the encoder also
writes an MD5 picture-hash SEI, which is removed from the returned stream, so
the counted bitstream is what the encoder writes without the SEI. Then, outside
the encode timer (`after_encode`), the stream with the SEI is decoded
uncropped and its MD5 compared with the encoder's.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
from pathlib import Path
import re
import tempfile

import numpy as np

from harness import CodecError, CodecSpec, Option, hookimpl, run_tool, truthy
from harness_plugins.vvc_sps import rbsp

VERSION = "1.1"  # 1.1: tuned tool switches by default (TUNED_PARAMS)
PRESETS = ("faster", "fast", "medium", "slow", "slower")
DEFAULT_PRESET = "fast"
BASE_PARAMS = "ChromaFormatIDC=400:IntraQPOffset=0:BIM=0"
# The default tool switches on top of the preset, chosen against a real VTM-23.3 on the mini features
# (docs/vvc-vs-vtm.md has the sweep; benchmarks/bench_vvc_vs_vtm.py re-measures it):
# - transform skip up to 32x32 and VTM's AI deblocking offsets (-2/-5): VTM's intra config does both;
#   VVenC enables transform skip only on pictures it detects as screen content, which features are not;
# - VTM's size-dependent number of intra modes tested with full RD (not 1), and ISP;
# - 128x128 CTUs with a minimum QT of 8, as VTM.
TUNED_PARAMS = ("TransformSkip=1:TransformSkipLog2MaxSize=5:LoopFilterBetaOffset_div2=-2:LoopFilterTcOffset_div2=-5:"
                "NumIntraModesFullRD=-1:ISP=3:CTUSize=128:MinQTISlice=8")
SUFFIX_SEI_NUT, PREFIX_SEI_NUT = 24, 23
DECODED_PICTURE_HASH = 132
DEFAULT_TIMEOUT_S = 3600.0
OPTIONS = {"preset": Option(DEFAULT_PRESET, choices=PRESETS, help="VVenC preset"),
           "params": Option(TUNED_PARAMS, help="VVenC switches Key=Value:... on top of the preset ('' for none)"),
           "threads": Option("1", "int", minimum=1, local=True),
           "timeout": Option(str(DEFAULT_TIMEOUT_S), "float", minimum=1, local=True),
           "check_recon": Option("1", "bool", help="check each encode against the decoder (MD5 picture hash)",
                                 local=True)}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def availability() -> str | None:
    try:
        exe = ffmpeg_exe()
    except Exception as exc:  # not installed, or no binary for this platform
        return f"imageio-ffmpeg is needed: pip install 'fcm-harness[vvc]' ({type(exc).__name__}: {exc})"
    if not Path(exe).exists():
        return f"the ffmpeg of imageio-ffmpeg is missing at {exe}"
    return None


# Tool switches: `-o params=...` replaces TUNED_PARAMS (`-o params=` codes with the bare preset); the base
# settings above are fixed (they make the stream a 4:0:0 intra stream at the labelled QP).
FIXED_KEYS = frozenset(k.split("=")[0].lower() for k in BASE_PARAMS.split(":")) | {"seidecodedpicturehash"}
_PARAM = re.compile(r"[A-Za-z][A-Za-z0-9_]*=[A-Za-z0-9.+-]+")  # VVenC names may hold "_" (LoopFilterTcOffset_div2)


def parse_params(text: str) -> tuple[str, ...]:
    """`Key=Value:Key=Value` VVenC switches (as VVenC's own config names), checked for form."""
    items = tuple(item for item in text.split(":") if item)
    for item in items:
        if not _PARAM.fullmatch(item):
            raise CodecError(f"vvc: bad params entry {item!r}; expected Key=Value items separated by ':' "
                             "(VVenC config names, e.g. params=MTS=1:LFNST=1)")
        if item.split("=")[0].lower() in FIXED_KEYS:
            raise CodecError(f"vvc: params may not change {item.split('=')[0]} (fixed: {BASE_PARAMS})")
    return items


def encoder_args(exe: str, width: int, height: int, qp: int, preset: str, threads: int, out: Path,
                 picture_hash: bool, extra: tuple[str, ...] = ()) -> list[str]:
    params = ":".join((BASE_PARAMS, *extra)) + (":SEIDecodedPictureHash=1" if picture_hash else "")
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{width}x{height}", "-i", "pipe:0",
            "-c:v", "libvvenc", "-preset", preset, "-qp", str(qp), "-qpa", "0", "-g", "1",
            "-threads", str(threads), "-vvenc-params", params, "-f", "vvc", str(out)]


def decoder_args(exe: str, crop: bool = True) -> list[str]:
    """No -pix_fmt: a 4:0:0 stream comes out as mono10 as it is, and anything else is
    refused by `parse_y4m_gray10` (asking for gray10le would range-convert a 4:2:0 stream)."""
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1",
            *([] if crop else ["-apply_cropping", "0"]),
            "-f", "vvc", "-i", "pipe:0", "-frames:v", "1",  # one picture: a stream of many is not read whole
            "-f", "yuv4mpegpipe", "-strict", "-1", "pipe:1"]


def yuv420_input(frame: np.ndarray) -> bytes:
    """Luma = the frame; both chroma planes flat at mid-grey (dropped by ChromaFormatIDC=400)."""
    h, w = frame.shape
    chroma = np.full(2 * ((h + 1) // 2) * ((w + 1) // 2), 512, dtype="<u2")
    return frame.astype("<u2", copy=False).tobytes() + chroma.tobytes()


def parse_y4m_gray10(data: bytes) -> np.ndarray:
    """The first frame of a yuv4mpeg stream in gray10le (mono10)."""
    end = data.find(b"\n")
    header = data[:end].decode("ascii", errors="replace")
    w, h = re.search(r" W(\d+)", header), re.search(r" H(\d+)", header)
    if not header.startswith("YUV4MPEG2") or not w or not h or "Cmono10" not in header:
        raise CodecError(f"vvc: unexpected decoder output header {header[:80]!r}")
    width, height = int(w.group(1)), int(h.group(1))
    start = data.find(b"\n", data.find(b"FRAME", end)) + 1
    payload = data[start:start + 2 * width * height]
    if start <= 0 or len(payload) != 2 * width * height:
        raise CodecError("vvc: the decoder returned a short frame")
    return np.frombuffer(payload, dtype="<u2").reshape(height, width).astype(np.uint16)


def split_picture_hash(stream: bytes) -> tuple[bytes, bytes | None]:
    """(stream without SEI NAL units, the MD5 of the decoded-picture-hash SEI or None)."""
    kept, md5 = [], None
    positions = [m.start() for m in re.finditer(b"\x00\x00\x01", stream)]
    for index, pos in enumerate(positions):
        start = pos - 1 if pos > 0 and stream[pos - 1] == 0 else pos  # keep 4-byte start codes whole
        end = positions[index + 1] if index + 1 < len(positions) else len(stream)
        if end < len(stream) and stream[end - 1] == 0:
            end -= 1
        nal = stream[pos + 3:end]
        kind = (nal[1] >> 3) & 0x1F if len(nal) > 1 else -1
        if kind in (SUFFIX_SEI_NUT, PREFIX_SEI_NUT):
            md5 = _picture_md5(nal) or md5
            continue
        kept.append(stream[start:end])
    return b"".join(kept), md5


def _picture_md5(nal: bytes) -> bytes | None:
    payload, i = rbsp(nal[2:]), 0
    kind = size = 0
    while payload[i] == 0xFF:
        kind, i = kind + 255, i + 1
    kind, i = kind + payload[i], i + 1
    while payload[i] == 0xFF:
        size, i = size + 255, i + 1
    size, i = size + payload[i], i + 1
    body = payload[i:i + size]
    if kind != DECODED_PICTURE_HASH or not body or body[0] != 0:  # hash type 0 = MD5
        return None
    return bytes(body[2:18])


class VvcCodec:
    def __init__(self, preset: str, threads: int, timeout: float, check_recon: bool,
                 params: tuple[str, ...] = ()) -> None:
        self.exe, self.preset, self.threads, self.params = ffmpeg_exe(), preset, threads, params
        self.timeout, self.check_recon = timeout, check_recon
        self._unchecked: tuple[bytes, bytes] | None = None  # (stream with the SEI, its MD5) of the last encode

    def encode(self, frame: np.ndarray, rate_point: float, task: str) -> bytes:
        qp = int(rate_point)
        if qp != rate_point or not 0 <= qp <= 63:
            raise CodecError(f"vvc: QP must be an integer 0..63, got {rate_point}")
        height, width = frame.shape
        with tempfile.TemporaryDirectory(prefix="vvc-") as tmp:
            out = Path(tmp) / "out.266"
            # the stream goes to a file: VVenC prints configuration notes on stdout
            run_tool(encoder_args(self.exe, width, height, qp, self.preset, self.threads, out, self.check_recon,
                                  self.params),
                     stdin=yuv420_input(frame), timeout=self.timeout, name="ffmpeg/libvvenc")
            stream = out.read_bytes() if out.exists() else b""
        if not stream:
            raise CodecError("vvc: the encoder wrote no bitstream")
        if not self.check_recon:
            return stream
        stripped, md5 = split_picture_hash(stream)
        if md5 is None:
            raise CodecError("vvc: the encoder wrote no picture-hash SEI to check against")
        self._unchecked = (stream, md5)
        return stripped

    def after_encode(self) -> None:
        """The decoder's picture must be the encoder's reconstruction (the MD5 SEI)."""
        if self._unchecked is None:
            return
        stream, md5 = self._unchecked
        self._unchecked = None
        full = self._decode(stream, crop=False)
        if hashlib.md5(full.astype("<u2").tobytes()).digest() != md5:
            raise CodecError("vvc: the decoder's picture differs from the encoder's reconstruction (MD5 SEI)")

    def decode(self, bitstream: bytes) -> np.ndarray:
        return self._decode(bitstream, crop=True)

    def _decode(self, bitstream: bytes, crop: bool) -> np.ndarray:
        out = run_tool(decoder_args(self.exe, crop), stdin=bitstream, timeout=self.timeout, name="ffmpeg/vvc")
        return parse_y4m_gray10(out)


def make_codec(options: Mapping[str, str]) -> VvcCodec:
    # names, presets, numbers and flags are checked by the harness against OPTIONS (CodecSpec.open)
    value = {**{key: option.default for key, option in OPTIONS.items()}, **options}
    return VvcCodec(value["preset"], int(value["threads"]), float(value["timeout"]), truthy(value["check_recon"]),
                    parse_params(value["params"]))


def provenance(options: Mapping[str, str]) -> dict[str, str]:
    try:
        banner = run_tool([ffmpeg_exe(), "-hide_banner", "-h", "encoder=libvvenc"], timeout=30).decode(errors="replace")
        version = run_tool([ffmpeg_exe(), "-version"], timeout=30).decode(errors="replace").splitlines()[0]
    except CodecError:
        return {}
    import imageio_ffmpeg

    vvenc = re.search(r"libvvenc[^\n]*", banner)
    return {"ffmpeg": version, "imageio_ffmpeg": imageio_ffmpeg.__version__,
            "encoder": vvenc.group(0) if vvenc else "libvvenc", "base_params": BASE_PARAMS,
            "preset": options.get("preset", DEFAULT_PRESET),
            "params": options.get("params", TUNED_PARAMS)}


@hookimpl
def harness_codecs() -> list[CodecSpec]:
    return [CodecSpec(
        name="vvc", version=VERSION, family="handcrafted", input_kind="frame10", factory=make_codec,
        rate_parameter="qp", rate_points=None, external_tools=("ffmpeg (imageio-ffmpeg) with libvvenc",),
        options=OPTIONS,
        availability=availability, provenance=provenance,
        description=(f"VVC intra, 4:0:0, VVenC (preset {DEFAULT_PRESET} + tuned tool switches) + FFmpeg's native "
                     "decoder, from imageio-ffmpeg; measured vs real VTM-23.3 on mini: BD-rate on the task metric "
                     "+1.8 % (ViT) / +1.3 % (LLM), on MSE +5.6 % / +0.4 %, at 22-27x less encode CPU "
                     "(docs/vvc-vs-vtm.md; python benchmarks/bench_vvc_vs_vtm.py)"),
    )]
