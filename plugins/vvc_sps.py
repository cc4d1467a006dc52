"""Read the picture size from a VVC (H.266) Annex-B bitstream's SPS.

VTM's DecoderApp writes raw samples with no header; the decoder side learns
the picture size from the stream itself, here: the SPS's maximum picture size
minus its conformance window (ITU-T H.266 §7.3.2.4, §7.3.3). Only the fields
before the conformance window are read.
"""

from __future__ import annotations

from dataclasses import dataclass

SPS_NUT = 15


@dataclass(frozen=True)
class SpsInfo:
    chroma_format_idc: int
    coded_width: int
    coded_height: int
    width: int  # after the conformance window
    height: int


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("invalid exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def align(self) -> None:
        self.pos = (self.pos + 7) & ~7


def nal_units(stream: bytes) -> list[bytes]:
    """Split an Annex-B byte stream at its start codes (payloads with NAL headers)."""
    units, start, i = [], None, 0
    while True:
        j = stream.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if start is not None:
            end = j - 1 if j > 0 and stream[j - 1] == 0 else j
            units.append(stream[start:end])
        start = i = j + 3
    if start is not None:
        units.append(stream[start:])
    return [u for u in units if len(u) >= 2]


def rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out, zeros = bytearray(), 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_profile_tier_level(bits: _Bits, max_sublayers_minus1: int) -> None:
    bits.u(7 + 1)  # general_profile_idc, general_tier_flag
    bits.u(8)  # general_level_idc
    bits.u(1 + 1)  # ptl_frame_only_constraint_flag, ptl_multilayer_enabled_flag
    if bits.u(1):  # gci_present_flag
        raise ValueError("general constraints info present: not supported by this reader")
    bits.align()
    present = [bits.u(1) for _ in range(max_sublayers_minus1)]
    bits.align()
    for flag in present:
        if flag:
            bits.u(8)
    for _ in range(bits.u(8)):  # ptl_num_sub_profiles
        bits.u(32)


def parse_sps(stream: bytes) -> SpsInfo:
    """Picture size and chroma format from the first SPS of `stream`."""
    for nal in nal_units(stream):
        if (nal[1] >> 3) & 0x1F != SPS_NUT:
            continue
        bits = _Bits(rbsp(nal[2:]))
        bits.u(4 + 4)  # sps_seq_parameter_set_id, sps_video_parameter_set_id
        max_sublayers_minus1 = bits.u(3)
        chroma = bits.u(2)
        bits.u(2)  # sps_log2_ctu_size_minus5
        if bits.u(1):  # sps_ptl_dpb_hrd_params_present_flag
            _skip_profile_tier_level(bits, max_sublayers_minus1)
        bits.u(1)  # sps_gdr_enabled_flag
        if bits.u(1):  # sps_ref_pic_resampling_enabled_flag
            bits.u(1)  # sps_res_change_in_clvs_allowed_flag
        width, height = bits.ue(), bits.ue()
        left = right = top = bottom = 0
        if bits.u(1):  # sps_conformance_window_flag
            left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        return SpsInfo(chroma, width, height, width - sub_w * (left + right), height - sub_h * (top + bottom))
    raise ValueError("no SPS in the bitstream")
