"""The `vtm` anchor: VVC intra coding with the user's VTM build, exactly as the CTC says.

VTM is not on any package registry: point the harness at a build with
  HARNESS_VTM_DIR=<VTM tree>  (bin/EncoderApp*, bin/DecoderApp*, cfg/encoder_intra_vtm.cfg)
or the single files HARNESS_VTM_ENCODER, HARNESS_VTM_DECODER, HARNESS_VTM_CFG,
or codec options -o encoder=... -o decoder=... -o cfg=..., or a plugin's
`harness_locate_tool` hook ("vtm-encoder", "vtm-decoder", "vtm-cfg").

The encoder command line is the CTC's (paper §6.1.2; official vtm_baseline.py)
plus `-o rec.yuv`, which only adds the encoder's reconstruction file: the
bitstream stays byte-identical. The reconstruction is compared with what
DecoderApp makes of the bitstream (in `after_encode`, outside the encode
timer), so an encoder/decoder mismatch fails the job instead of being
measured. The whole .bin is counted.

The CTC's VTM is 23.3: a build printing another version in its banner
(`VVCSoftware: VTM Encoder Version 23.3 [...]`) is refused unless the codec
option `vtm_version` names it (or is `any`); the versions of both tools go into
run.json. VTM's own log summary of each encoding (banner, the picture's bits
and PSNR line, the SUMMARY table, bytes written, time) is kept in the run
directory under logs/; `-o log_dir=DIR` keeps the whole logs as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import functools
import glob
import os
from pathlib import Path
import re
import tempfile

import numpy as np

from harness import CodecError, CodecSpec, Option, hookimpl, locate_tool, run_tool, truthy
from harness_plugins.vvc_sps import parse_sps

VERSION = "1.1"
CTC_VTM_VERSION = "23.3"  # paper §6.1.2 and the official static binaries
BANNER = re.compile(r"VVCSoftware: VTM (?:Encoder|Decoder) Version ([0-9][\w.\-]*)")
# lines of the encoder's output worth keeping: banner, per-picture bits/PSNR, bytes written, time
SUMMARY_LINES = re.compile(r"^\s*(?:VVCSoftware:|POC\s|Bytes written to file|Total Time)")
ENV_DIR, ENV_ENCODER, ENV_DECODER, ENV_CFG = "HARNESS_VTM_DIR", "HARNESS_VTM_ENCODER", "HARNESS_VTM_DECODER", "HARNESS_VTM_CFG"
DEFAULT_TIMEOUT_S = 6 * 3600.0  # supplement Table 2: up to ~4 h for one dpt feature at QP 22


@dataclass(frozen=True)
class VtmTools:
    encoder: Path
    decoder: Path
    cfg: Path


def _first(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern))
    return found[0] if found else None


def _candidates(options: Mapping[str, str]) -> dict[str, str | None]:
    root = os.environ.get(ENV_DIR)
    from_dir = {
        "encoder": _first(f"{root}/bin/EncoderApp*") if root else None,
        "decoder": _first(f"{root}/bin/DecoderApp*") if root else None,
        "cfg": _first(f"{root}/cfg/encoder_intra_vtm.cfg") if root else None,
    }
    env = {"encoder": os.environ.get(ENV_ENCODER), "decoder": os.environ.get(ENV_DECODER), "cfg": os.environ.get(ENV_CFG)}
    return {key: options.get(key) or locate_tool(f"vtm-{key}") or env[key] or from_dir[key]
            for key in ("encoder", "decoder", "cfg")}


def find_tools(options: Mapping[str, str] | None = None) -> VtmTools | str:
    """The VTM tools, or a message saying what is missing and how to provide it."""
    found = _candidates(options or {})
    missing = [k for k, v in found.items() if not v or not Path(v).is_file()]
    if missing:
        names = {"encoder": "EncoderApp", "decoder": "DecoderApp", "cfg": "encoder_intra_vtm.cfg"}
        return (f"VTM not found ({', '.join(names[m] for m in missing)} missing): build VTM-23.3 "
                f"(JVET's VVCSoftware_VTM) and set {ENV_DIR} to its tree, or set "
                f"{ENV_ENCODER}, {ENV_DECODER} and {ENV_CFG}")
    return VtmTools(Path(found["encoder"]), Path(found["decoder"]), Path(found["cfg"]))


def encoder_args(tools: VtmTools, yuv: Path, bitstream: Path, qp: int, width: int, height: int,
                 recon: Path | None) -> list[str]:
    """The CTC encoder command line (official vtm_baseline.py), with `-o` naming the reconstruction."""
    return [str(tools.encoder), "-c", str(tools.cfg), "-i", str(yuv), "-o", str(recon) if recon else "",
            "-b", str(bitstream), "-q", str(qp), "--ConformanceWindowMode=1", "-wdt", str(width),
            "-hgt", str(height), "-f", "1", "-fr", "1", "--InternalBitDepth=10", "--InputBitDepth=10",
            "--InputChromaFormat=400", "--OutputBitDepth=10"]


def decoder_args(tools: VtmTools, bitstream: Path, out: Path) -> list[str]:
    return [str(tools.decoder), "-b", str(bitstream), "-o", str(out)]


def read_frame(path: Path, height: int, width: int, what: str) -> np.ndarray:
    data = np.fromfile(path, dtype="<u2") if path.exists() else np.empty(0, "<u2")
    if data.size < height * width:
        raise CodecError(f"vtm: {what} has {data.size} samples, expected {height}x{width} = {height * width}")
    if data.size == height * width:
        return data.reshape(height, width).astype(np.uint16)
    # an uncropped picture (padded to the CU size): crop the conformance window's top-left part
    padded_w = -(-width // 8) * 8
    rows = data.size // padded_w
    return data[: rows * padded_w].reshape(rows, padded_w)[:height, :width].astype(np.uint16)


def parse_version(text: str | bytes) -> str:
    """The version in VTM's banner ('VVCSoftware: VTM Encoder Version 23.3 [Linux]...'); '' if none."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    match = BANNER.search(text)
    return match.group(1) if match else ""


def tool_version(tool: Path) -> str:
    """The version a VTM tool prints in its banner ('' when it prints none)."""
    stat = tool.stat()
    return _tool_version(str(tool), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _tool_version(tool: str, mtime_ns: int, size: int) -> str:  # cached per build (path, mtime, size)
    with tempfile.TemporaryDirectory(prefix="vtm-version-") as tmp:
        output = Path(tmp) / "banner.txt"
        try:  # VTM prints its banner before parsing options; --help makes it stop there
            run_tool([tool, "--help"], timeout=30, cwd=tmp, log=output, name=Path(tool).name)
        except CodecError:  # some builds exit non-zero after the help text; the banner is in the log
            pass
        return parse_version(output.read_bytes()) if output.exists() else ""


def check_versions(tools: VtmTools, wanted: str) -> None:
    """Refuse tools that are not VTM `wanted` (the CTC's 23.3 by default); 'any' accepts every build."""
    if wanted == "any":
        return
    for name, tool in (("EncoderApp", tools.encoder), ("DecoderApp", tools.decoder)):
        found = tool_version(tool)
        if not found:
            raise CodecError(f"vtm: {name} at {tool} prints no VTM version banner ('VVCSoftware: VTM ... Version'); "
                             "give -o vtm_version=any to use it anyway")
        if found != wanted and wanted != CTC_VTM_VERSION:
            raise CodecError(f"vtm: {name} at {tool} is VTM {found}, not the VTM {wanted} -o vtm_version asks for")
        if found != wanted:
            raise CodecError(f"vtm: {name} at {tool} is VTM {found}; the CTC's is VTM {wanted} (paper §6.1.2; "
                             f"other versions change the bitstreams): build VTM-{wanted} or accept this one with "
                             f"-o vtm_version={found}")


def log_summary(output: str) -> str:
    """VTM's own account of an encoding: banner, the picture's bits and PSNR, the summary table, totals.

    VTM-23.3 prints its table as 'LayerId  0' then 'Total Frames | Bitrate Y-PSNR' and one
    line of values (other builds head it 'SUMMARY ---'); the table ends at a blank line.
    """
    kept, in_summary = [], False
    for line in output.splitlines():
        if line.startswith(("LayerId", "SUMMARY")):
            in_summary = True
        elif in_summary and not line.strip():
            in_summary = False
        if in_summary or SUMMARY_LINES.match(line):
            kept.append(line.rstrip())
    return "\n".join(kept) + "\n" if kept else ""


class VtmCodec:
    def __init__(self, tools: VtmTools, timeout: float, check_recon: bool, log_dir: Path | None) -> None:
        self.tools, self.timeout, self.check_recon, self.log_dir = tools, timeout, check_recon, log_dir
        self._unchecked: tuple[bytes, np.ndarray] | None = None  # (bitstream, encoder's reconstruction)
        self._summary = ""

    def encode(self, frame: np.ndarray, rate_point: float, task: str) -> bytes:
        qp = int(rate_point)
        height, width = frame.shape
        self._unchecked, self._summary = None, ""
        with tempfile.TemporaryDirectory(prefix="vtm-") as tmp:
            tmp = Path(tmp)
            frame.astype("<u2").tofile(tmp / "in.yuv")
            recon = tmp / "rec.yuv" if self.check_recon else None
            log = self.log_dir / f"{task}-qp{qp}-{os.getpid()}.log" if self.log_dir else None
            output = run_tool(encoder_args(self.tools, tmp / "in.yuv", tmp / "out.bin", qp, width, height, recon),
                              timeout=self.timeout, cwd=tmp, log=log, name="EncoderApp")
            if not (tmp / "out.bin").exists():
                raise CodecError("vtm: EncoderApp wrote no bitstream")
            bitstream = (tmp / "out.bin").read_bytes()
            if recon is not None:  # kept in memory: the temporary folder goes now, the check comes later
                self._unchecked = (bitstream, read_frame(recon, height, width, "the encoder's reconstruction"))
        self._summary = log_summary(output.decode("utf-8", errors="replace"))
        return bitstream

    def after_encode(self) -> None:
        """DecoderApp's picture must be EncoderApp's reconstruction (called outside the encode timer)."""
        if self._unchecked is None:
            return
        bitstream, reconstruction = self._unchecked
        self._unchecked = None
        if not np.array_equal(self.decode(bitstream), reconstruction):
            raise CodecError("vtm: DecoderApp's output differs from EncoderApp's reconstruction")

    def encode_log(self) -> str:
        """VTM's log summary of the last encoding (the harness keeps it in the run directory)."""
        return self._summary

    def decode(self, bitstream: bytes) -> np.ndarray:
        try:
            sps = parse_sps(bitstream)
        except (ValueError, IndexError) as exc:
            raise CodecError(f"vtm: cannot read the picture size from the bitstream ({exc})") from None
        with tempfile.TemporaryDirectory(prefix="vtm-dec-") as tmp:
            tmp = Path(tmp)
            (tmp / "in.bin").write_bytes(bitstream)
            run_tool(decoder_args(self.tools, tmp / "in.bin", tmp / "dec.yuv"), timeout=self.timeout, cwd=tmp,
                     name="DecoderApp")
            return read_frame(tmp / "dec.yuv", sps.height, sps.width, "DecoderApp's output")


OPTIONS = {"encoder": Option("", "path", help="EncoderApp"), "decoder": Option("", "path", help="DecoderApp"),
           "cfg": Option("", "path", help="encoder_intra_vtm.cfg"),
           "timeout": Option(str(DEFAULT_TIMEOUT_S), "float", minimum=1, local=True),
           "check_recon": Option("1", "bool", help="check each encode's reconstruction against the decoder's",
                                 local=True),
           "log_dir": Option("", "path", help="also keep VTM's full logs here"),
           "vtm_version": Option(CTC_VTM_VERSION, help="the VTM version to accept ('any': any)", local=True)}


def make_codec(options: Mapping[str, str]) -> VtmCodec:
    # names and kinds are checked by the harness against OPTIONS (CodecSpec.open)
    tools = find_tools(options)
    if isinstance(tools, str):
        raise CodecError(tools)
    check_versions(tools, options.get("vtm_version") or CTC_VTM_VERSION)
    log_dir = Path(options["log_dir"]) if options.get("log_dir") else None
    return VtmCodec(tools, float(options.get("timeout", DEFAULT_TIMEOUT_S)),
                    truthy(options.get("check_recon", "1")), log_dir)


def availability(options: Mapping[str, str] | None = None) -> str | None:
    tools = find_tools(options)
    return tools if isinstance(tools, str) else None


def provenance(options: Mapping[str, str]) -> dict[str, str]:
    tools = find_tools(options)
    if isinstance(tools, str):
        return {}
    return {"vtm_version": tool_version(tools.encoder), "vtm_decoder_version": tool_version(tools.decoder),
            "encoder": str(tools.encoder), "decoder": str(tools.decoder), "cfg": str(tools.cfg)}


@hookimpl
def harness_codecs() -> list[CodecSpec]:
    return [CodecSpec(
        name="vtm", version=VERSION, family="handcrafted", input_kind="frame10", factory=make_codec,
        rate_parameter="qp", rate_points=None, external_tools=("EncoderApp", "DecoderApp"),
        options=OPTIONS,
        availability=availability, provenance=provenance,
        description="VVC intra with the reference VTM-23.3 (the CTC anchor; user-installed)",
    )]
