"""fcm-harness: common test conditions and evaluation for large-model feature coding.

The public API for plugin authors and scripts is what this module exports;
everything else is internal and may change.
"""

__version__ = "0.1.0"

from harness.codec import Codec, CodecSpec, format_rate_point  # noqa: E402
from harness.datasets import DatasetSpec  # noqa: E402
from harness.errors import CodecError, HarnessError  # noqa: E402
from harness.hookspecs import hookimpl  # noqa: E402

__all__ = [
    "Codec",
    "CodecError",
    "CodecSpec",
    "DatasetSpec",
    "HarnessError",
    "__version__",
    "format_rate_point",
    "hookimpl",
]
