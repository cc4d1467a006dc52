"""manifest.json of a submission bundle: what was coded, under which conditions, by whom.

Schema 2 (`fcm-harness-bundle/2`). The codec options are stored here and in run.json's
`run_key.codec_options` (schema 2 of run.json keeps them only there); the crosscheck compares the
two. The manifest says what the *proponent* claims: nothing in it chooses what runs on the
checker's machine (the codec comes from what is installed there; options that name programs or
paths are the checker's own, see `harness.options.Option.local`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.formats.base import FormatError, Fields, plain, read_json

SCHEMA = "fcm-harness-bundle/2"
OLD_SCHEMAS = ("fcm-harness-bundle/1",)
MAX_BYTES = 16 << 20
SUBMITTER_FIELDS = ("proponent", "contact", "licence", "title", "description", "url", "organisation")


@dataclass(frozen=True)
class CtcRef:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class DatasetRef:
    name: str
    synthetic: bool
    samples: Mapping[str, int]  # samples per task the run coded
    content_sha256: Mapping[str, str]  # per task, over the coded features' sha256
    sample_lists: Mapping[str, str]  # per task, sha256 of the sample list file


@dataclass(frozen=True)
class PluginRef:
    """Where the codec came from on the packing machine: what a checker installs to check it."""
    distribution: str
    distribution_version: str
    entry_point: str
    module: str


@dataclass(frozen=True)
class CodecRef:
    name: str
    version: str
    family: str | None
    input_kind: str
    rate_parameter: str
    options: Mapping[str, str]
    quant_rule: str | None
    plugin: PluginRef
    tools: Mapping[str, Any] = field(default_factory=dict)  # shown, never acted on


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class Contents:
    records: int
    bitstreams: int
    bitstream_bytes: int
    metrics: bool
    rate_points: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    path: Path
    harness_version: str
    run_harness_version: str | None
    ctc: CtcRef
    dataset: DatasetRef
    codec: CodecRef
    model_files: tuple[ModelFile, ...]
    submitter: Mapping[str, str]
    contents: Contents
    environment: Mapping[str, Any] = field(default_factory=dict)  # shown, never acted on

    @property
    def title(self) -> str:
        """How pages name this entry: the proponent's title, else codec, version and options."""
        if self.submitter.get("title"):
            return self.submitter["title"]
        options = " ".join(f"{k}={v}" for k, v in sorted(self.codec.options.items())
                           if "<path>" not in v)  # a folder of the packing machine tells a reader nothing
        return f"{self.codec.name} {self.codec.version}" + (f" ({options})" if options else "")

    def install_hint(self) -> str:
        """What a checker without the codec installs: distribution, version and the proponent's url."""
        plugin = self.codec.plugin
        hint = f"pip install '{plugin.distribution}=={plugin.distribution_version}'"
        url = self.submitter.get("url")
        return hint + (f" (the proponent's page: {url})" if url else "")


def _count_map(fields: Fields, key: str) -> dict[str, int]:
    table = fields.table(key, {})
    return {name: table.integer(name, maximum=10_000_000) for name in sorted(table.data)}


def _sha_map(fields: Fields, key: str) -> dict[str, str]:
    table = fields.table(key, {})
    return {name: table.sha256(name) for name in sorted(table.data)}


def parse_manifest(data: Any, path: Path) -> Manifest:
    top = Fields(data, path)
    schema = top.text("schema", max_length=80)
    if schema in OLD_SCHEMAS:
        raise FormatError(f"{path}: a bundle of schema {schema}, which this harness no longer checks; re-pack the "
                          "run with this harness (harness pack RUN_DIR)")
    if schema != SCHEMA:
        raise top.fail("schema", f"is {schema[:40]!r}; this harness reads {SCHEMA}")
    ctc = top.table("ctc")
    dataset = top.table("dataset")
    codec = top.table("codec")
    plugin = codec.table("plugin")
    contents = top.table("contents")
    submitter = top.text_map("submitter", max_length=2000)
    unknown = sorted(set(submitter) - set(SUBMITTER_FIELDS))
    if unknown:
        raise top.fail("submitter", f"has unknown field(s) {', '.join(unknown)[:80]}")
    environment = top.raw("environment", {})
    if not isinstance(environment, dict):
        raise top.fail("environment", "must be a JSON object")
    tools = codec.raw("tools", {})
    if not isinstance(tools, dict):
        raise codec.fail("tools", "must be a JSON object")
    return Manifest(
        path=path,
        harness_version=top.text("harness_version", max_length=80),
        run_harness_version=top.optional_text("run_harness_version", max_length=80),
        ctc=CtcRef(ctc.text("name", max_length=200), ctc.text("version", max_length=80), ctc.sha256("sha256")),
        dataset=DatasetRef(dataset.text("name", max_length=200, empty=False), dataset.flag("synthetic"),
                           _count_map(dataset, "samples"), _sha_map(dataset, "content_sha256"),
                           _sha_map(dataset, "sample_lists")),
        codec=CodecRef(codec.safe_name("name"), codec.text("version", max_length=80),
                       codec.optional_text("family", max_length=80), codec.text("input_kind", max_length=40),
                       codec.text("rate_parameter", max_length=40), codec.text_map("options", max_length=2000),
                       codec.optional_text("quant_rule", max_length=80),
                       PluginRef(plugin.text("distribution", max_length=200),
                                 plugin.text("distribution_version", max_length=80),
                                 plugin.text("entry_point", "", max_length=200),
                                 plugin.text("module", "", max_length=200)),
                       tools),
        model_files=tuple(ModelFile(m.text("name", max_length=255, empty=False), m.integer("size"), m.sha256("sha256"),
                                    m.texts("used_by")) for m in top.tables("model_files", max_items=10_000)),
        submitter=submitter,
        contents=Contents(contents.integer("records"), contents.integer("bitstreams"),
                          contents.integer("bitstream_bytes"), contents.flag("metrics"),
                          contents.texts("rate_points", max_items=100_000)),
        environment=environment,
    )


def read_manifest(root: Path) -> Manifest:
    """The typed manifest.json of a bundle directory; FormatError naming the file and field."""
    path = Path(root) / "manifest.json"
    return parse_manifest(read_json(path, MAX_BYTES), path)


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as it is written (the one writer; read back by `parse_manifest` unchanged)."""
    codec = manifest.codec
    return plain({
        "schema": SCHEMA,
        "harness_version": manifest.harness_version,
        "run_harness_version": manifest.run_harness_version,
        "ctc": {"name": manifest.ctc.name, "version": manifest.ctc.version, "sha256": manifest.ctc.sha256},
        "dataset": {"name": manifest.dataset.name, "synthetic": manifest.dataset.synthetic,
                    "samples": manifest.dataset.samples, "content_sha256": manifest.dataset.content_sha256,
                    "sample_lists": manifest.dataset.sample_lists},
        "codec": {"name": codec.name, "version": codec.version, "family": codec.family, "input_kind": codec.input_kind,
                  "rate_parameter": codec.rate_parameter, "options": codec.options, "quant_rule": codec.quant_rule,
                  "tools": codec.tools,
                  "plugin": {"distribution": codec.plugin.distribution,
                             "distribution_version": codec.plugin.distribution_version,
                             "entry_point": codec.plugin.entry_point, "module": codec.plugin.module}},
        "model_files": [{"name": m.name, "size": m.size, "sha256": m.sha256, "used_by": m.used_by}
                        for m in manifest.model_files],
        "environment": manifest.environment,
        "submitter": manifest.submitter,
        "contents": {"records": manifest.contents.records, "bitstreams": manifest.contents.bitstreams,
                     "bitstream_bytes": manifest.contents.bitstream_bytes, "metrics": manifest.contents.metrics,
                     "rate_points": manifest.contents.rate_points},
    })
