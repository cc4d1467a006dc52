"""Plugin discovery, conflicts, broken plugins, and built-ins using only the public API."""

from __future__ import annotations

import ast
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.errors import PluginError
from harness.registry import Registry
from harness.testing import check_codec
from plugins_for_tests import broken, duplicate, misbehaving

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
PUBLIC_MODULES = {"harness", "harness.testing", "harness.metrics"}


def test_builtins_are_found_through_entry_points():
    reg = Registry()
    assert "zlib" in reg.codecs and "demo" in reg.datasets
    assert reg.codecs["zlib"].source.distribution == "fcm-harness"
    assert reg.codecs["zlib"].source.target == "harness_plugins.zlib_codec"


def test_duplicate_codec_names_are_an_error_naming_both():
    reg = Registry(extra_plugins=[duplicate])
    with pytest.raises(PluginError, match=r"'zlib' is provided twice: by fcm-harness .* and by \(given\)"):
        reg.codec("zlib")


def test_broken_plugin_is_reported_not_fatal():
    reg = Registry(extra_plugins=[broken])
    assert "zlib" in reg.codecs  # the rest still works
    assert any("needs a library that is not installed" in b.error for b in reg.broken)
    with pytest.raises(PluginError, match="codec plugin 'plugins_for_tests.broken' .* is broken"):
        reg.codec("plugins_for_tests.broken")


def test_a_plugin_without_any_hook_is_reported():
    class Emptied:  # a plugin whose @hookimpl was lost in an edit: its codecs would silently vanish
        def make_codec(self):
            return None

    reg = Registry(extra_plugins=[Emptied()], extra_source="(given)")
    assert "zlib" in reg.codecs
    assert [b.error for b in reg.broken] == ["Emptied implements no harness hook (no @hookimpl function "
                                             "such as harness_codecs)"]


def test_unknown_codec_suggests():
    with pytest.raises(PluginError, match=r"unknown codec 'zlb'; did you mean 'zlib'\? available: .*zlib"):
        Registry().codec("zlb")


def test_builtin_plugins_import_only_the_public_api():
    offenders = []
    for path in PLUGINS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names
                          if (n == "harness" or n.startswith("harness.")) and n not in PUBLIC_MODULES]
    assert offenders == []


def test_zlib_conforms_and_is_lossless_at_shift_0(ctc):
    reg = Registry()
    spec = reg.codec("zlib").spec
    report = check_codec(spec, tasks=("cls", "seg", "dpt", "csr", "tti"), fresh_process=False)
    assert all(bits[0] > bits[-1] for bits in report.bits.values())
    from harness.testing import sample_input
    frame = sample_input(ctc, spec, "dpt")
    codec = spec.factory({})
    assert (codec.decode(codec.encode(frame, 0, "dpt")) == frame).all()


def test_conformance_catches_a_bad_codec():
    spec = Registry(extra_plugins=[misbehaving]).codec("garbage").spec
    with pytest.raises(Exception, match="decode returned shape"):
        check_codec(spec, tasks=("cls",))


def _zlib_stream(height: int, width: int, payload: bytes) -> bytes:
    from harness_plugins.zlib_codec import FORMAT, HEADER, MAGIC
    return HEADER.pack(MAGIC, FORMAT, 0, height, width) + payload


def _peak_bytes(call) -> tuple[int, BaseException | None]:
    import tracemalloc
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


def test_zlib_decoder_is_bounded_by_its_header():
    """A 128 KB stream that inflates to 128 MiB: the decoder stops at the header's 8x8 frame."""
    from harness.errors import CodecError
    from harness.testing import deflate_bomb
    from harness_plugins.zlib_codec import ZlibCodec

    bomb = _zlib_stream(8, 8, deflate_bomb(128 << 20))
    peak, error = _peak_bytes(lambda: ZlibCodec().decode(bomb))
    assert isinstance(error, CodecError) and "more than" in str(error), error
    assert peak < 4 << 20, f"decoding the bomb allocated {peak >> 20} MiB"
    # a header claiming a huge frame is refused before anything is inflated
    for height, width in ((2**31, 2**31), (65535, 65535), (0, 8)):
        peak, error = _peak_bytes(lambda: ZlibCodec().decode(_zlib_stream(height, width, zlib.compress(bytes(128)))))
        assert isinstance(error, CodecError) and f"{height}x{width}" in str(error), error
        assert peak < 1 << 20
    # truncated and over-long streams are refused, the exact size is accepted
    good = zlib.compress(bytes(128))
    assert ZlibCodec().decode(_zlib_stream(8, 8, good)).shape == (8, 8)
    for bad in (good[:-3], good + b"junk", zlib.compress(bytes(130))):
        with pytest.raises(CodecError):
            ZlibCodec().decode(_zlib_stream(8, 8, bad))


class _UnboundedZlib:
    """The zlib plugin's decoder as it was: inflates whatever the payload holds."""

    def __init__(self):
        from harness_plugins.zlib_codec import ZlibCodec
        self.inner = ZlibCodec()

    def encode(self, frame, rate_point, task):
        return self.inner.encode(frame, rate_point, task)

    def decode(self, bitstream):
        from harness_plugins.zlib_codec import HEADER
        height, width = HEADER.unpack_from(bitstream)[3:]
        raw = zlib.decompress(bitstream[HEADER.size:])
        return np.frombuffer(raw[:2 * height * width], "<u2").reshape(height, width).copy()


def test_conformance_catches_an_unbounded_decoder():
    from dataclasses import replace

    from harness.testing import deflate_bomb

    spec = Registry().codec("zlib").spec
    hostile = [_zlib_stream(8, 8, deflate_bomb(96 << 20))]
    check_codec(spec, tasks=("cls",), hostile=hostile)  # the plugin refuses it within the memory budget
    unbounded = replace(spec, factory=lambda options: _UnboundedZlib())
    with pytest.raises(AssertionError, match=r"allocated \d+ MiB decoding a bitstream that claims a huge output"):
        check_codec(unbounded, tasks=("cls",), hostile=hostile)


def test_misspelled_hook_breaks_its_plugin_naming_file_and_hook():
    from plugins_for_tests import misspelled
    reg = Registry(extra_plugins=[misspelled])
    assert "zlib" in reg.codecs  # the other plugins are unaffected
    [problem] = [b.error for b in reg.broken]
    assert "hook 'harness_codec' in" in problem and "misspelled.py" in problem
    assert "did you mean 'harness_codecs'?" in problem
    with pytest.raises(PluginError, match=r"unknown codec 'spelled'.*broken plugin .*harness_codec"):
        reg.codec("spelled")


def test_misspelled_hook_through_the_environment_is_one_line(tmp_path):
    import os
    import subprocess
    import sys
    env = {**os.environ, "FCM_HARNESS_PLUGINS": "plugins_for_tests.misspelled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--codec", "spelled", "--out", str(tmp_path / "r")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "misspelled.py" in lines[0] and "harness_codec" in lines[0], done.stderr


def test_a_head_clash_blocks_only_its_task():
    from plugins_for_tests import duplicate_head
    reg = Registry(extra_plugins=[duplicate_head])
    [conflict] = reg.head_conflicts
    assert conflict.name == "paper-cls" and conflict.tasks == {"cls"}
    assert reg.head_for("sal").spec.name == "mini-sal"  # other tasks are unaffected
    with pytest.raises(PluginError, match=r"TaskHeadSpec name 'paper-cls' is provided twice: by fcm-harness"):
        reg.head_for("cls")
