"""Every typed reader of a travelling file, fuzzed: random bytes, random JSON, and valid files with one
field truncated, retyped, oversized or dropped end in the reader's one error (never a traceback or
a hang). The budget is small here; benchmarks/fuzz_formats.py runs the same properties longer."""

from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from harness.errors import RunError
from harness.formats.base import FormatError, read_json
from harness.formats.crosscheck import CheckResult, CrosscheckReport, parse_report, report_json
from harness.formats.manifest import (CodecRef, Contents, CtcRef, DatasetRef, Manifest, ModelFile, PluginRef,
                                      manifest_json, parse_manifest)
from harness.run_meta import read_run_meta

# a small budget in the suite; benchmarks/fuzz_formats.py runs the same properties with a larger one
BUDGET = settings(max_examples=int(os.environ.get("FCM_FUZZ_EXAMPLES", "150")), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
SHA = "a" * 64

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


def valid_manifest() -> dict:
    return manifest_json(Manifest(
        Path("manifest.json"), "0.1.0", "0.1.0", CtcRef("paper", "1.1", SHA),
        DatasetRef("demo-v3", True, {"cls": 2}, {"cls": SHA}, {"cls": SHA}),
        CodecRef("zlib", "1.0", None, "frame10", "shift", {"level": "9"}, "paper",
                 PluginRef("fcm-harness", "0.1.0", "zlib", "harness_plugins.zlib_codec")),
        (ModelFile("m.bin", 3, SHA, ("cls@1",)),), {"title": "t"}, Contents(2, 2, 10, True, ("cls/shift0",))))


def valid_report() -> dict:
    return report_json(CrosscheckReport("b.tar", SHA, "0.1.0", "lab", "zlib", "1.0", SHA, "demo-v3", "all", 0, (),
                                        (("level", "9"),), (), (CheckResult("integrity", "pass", "ok", ()),)))


def mutations(valid: dict):
    """`valid` with one field (at any depth) replaced by a random JSON value, or dropped."""
    paths = []

    def walk(node, trail):
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append(trail + (key,))
                walk(value, trail + (key,))
    walk(valid, ())

    @st.composite
    def mutated(draw):
        data = json.loads(json.dumps(valid))
        trail = draw(st.sampled_from(paths))
        node = data
        for key in trail[:-1]:
            node = node[key]
        if draw(st.booleans()):
            node.pop(trail[-1])
        else:
            node[trail[-1]] = draw(json_values | st.text(min_size=5000, max_size=6000))
        return data
    return mutated()


def test_the_valid_files_read_back_as_written():
    assert manifest_json(parse_manifest(valid_manifest(), Path("m"))) == valid_manifest()
    assert report_json(parse_report(valid_report(), Path("r"))) == valid_report()


@BUDGET
@given(mutations(valid_manifest()))
def test_a_mutated_manifest_reads_or_fails_with_one_error(data):
    try:
        parse_manifest(data, Path("manifest.json"))
    except FormatError as exc:
        assert str(exc).startswith("manifest.json: ")


@BUDGET
@given(mutations(valid_report()))
def test_a_mutated_crosscheck_report_reads_or_fails_with_one_error(data):
    try:
        parse_report(data, Path("crosscheck.json"))
    except FormatError as exc:
        assert str(exc).startswith("crosscheck.json: ")


@BUDGET
@given(json_values)
def test_any_json_is_a_manifest_report_or_one_error(data):
    for parse in (parse_manifest, parse_report):
        try:
            parse(data, Path("f.json"))
        except FormatError:
            pass


@BUDGET
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode)
       | st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n))
def test_random_bytes_are_json_or_one_error(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.json"
        path.write_bytes(raw)
        try:
            read_json(path, 1 << 20)
        except FormatError:
            pass


@BUDGET
@given(json_values)
def test_any_run_json_is_read_or_refused_with_one_error(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "run.json").write_text(json.dumps(data))
        try:
            read_run_meta(Path(folder))
        except RunError:
            pass
