"""Plugin discovery, conflicts, broken plugins, and built-ins using only the public API."""

from __future__ import annotations

import ast
from pathlib import Path

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
