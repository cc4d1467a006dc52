"""fcm-harness: common test conditions and evaluation for large-model feature coding.

The public API for plugin authors and scripts is what this module exports;
everything else is internal and may change.
"""

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402

from harness.codec import MAX_FRAME_SAMPLES, Codec, CodecSpec, format_rate_point  # noqa: E402
from harness.ctc import load_ctc  # noqa: E402
from harness.dataset import parse_sample_list  # noqa: E402
from harness.datasets import DatasetSpec  # noqa: E402
from harness.errors import CodecError, HarnessError  # noqa: E402
from harness.external import run_tool  # noqa: E402
from harness.hookspecs import hookimpl  # noqa: E402
from harness.options import Option, truthy  # noqa: E402
from harness.npyio import atomic_save_npy, atomic_write_json, load_npy  # noqa: E402  (safe files for plugins)
from harness.processing import pad_to_multiple, unpad  # noqa: E402
from harness.tasks import HeadContext, TaskHeadSpec  # noqa: E402


def cache_dir() -> Path:
    """The harness's cache folder ($FCM_HARNESS_CACHE, else ~/.cache/fcm-harness): where a plugin may
    keep data it derives from its inputs and can make again (never results)."""
    from harness.sources import cache_dir as folder

    return folder()


def locate_tool(name: str) -> str | None:
    """Ask the plugins where an external tool is (`harness_locate_tool` hook); None if nobody knows."""
    from harness.registry import default_registry

    return default_registry().locate_tool(name)

__all__ = [
    "cache_dir",
    "Codec",
    "CodecError",
    "CodecSpec",
    "DatasetSpec",
    "HarnessError",
    "HeadContext",
    "MAX_FRAME_SAMPLES",
    "Option",
    "TaskHeadSpec",
    "__version__",
    "atomic_save_npy",
    "atomic_write_json",
    "format_rate_point",
    "truthy",
    "hookimpl",
    "load_ctc",
    "load_npy",
    "parse_sample_list",
    "locate_tool",
    "pad_to_multiple",
    "run_tool",
    "unpad",
]
