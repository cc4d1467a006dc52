"""The hook implementations the harness discovers through the package's entry point."""

from __future__ import annotations

from harness import CodecSpec, Option, hookimpl

from template_codec.codec import make_codec

SPEC = CodecSpec(
    name="template-levels",
    version="0.1",
    # the learned family: the harness hands the codec a float32 [0, 1] frame (truncated and
    # normalized under the CTC); "handcrafted" would hand it the 10-bit frame VTM codes
    family="learned",
    input_kind="frame01",
    factory=make_codec,
    # its own rate points, from the highest rate to the lowest (None: the CTC's λs per task)
    rate_parameter="levels",
    rate_points=(1024, 256, 64, 16, 4),
    # every option the factory accepts, declared once: the harness refuses other names and values
    options={"preset": Option("6", "int", minimum=0, maximum=9, help="lzma preset")},
    description="template plugin: [0,1] frame quantized to L levels, lzma-coded",
)


@hookimpl
def harness_codecs() -> list[CodecSpec]:
    return [SPEC]
