"""run.json read as typed fields: each checked once, here, with one error naming the file and field.

A run directory may come from anyone (a bundle, a colleague's disk, a hand edit), so the parts of
run.json the harness acts on (which codec and options decode the bitstreams, which dataset and
quantization rule the features are restored with) are read through `RunMeta`, never as raw dicts
scattered over the modules. The raw record stays available for what copies it whole (bundles,
report pages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import RunError
from harness.provenance import load_run_meta


@dataclass(frozen=True)
class RunMeta:
    path: Path  # the run.json this came from (for messages)
    codec: str
    codec_version: str
    family: str | None
    input_kind: str
    options: dict[str, str]  # the -o options the run was coded with (part of its key)
    dataset: str
    dataset_root: str
    synthetic: bool
    quant_rule: str | None
    model_fingerprints: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def option_items(self) -> tuple[tuple[str, str], ...]:
        """The options as a job carries them (sorted pairs)."""
        return tuple(sorted(self.options.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> RunMeta:
        codec, dataset, key = data.get("codec", {}), data.get("dataset", {}), data.get("run_key", {})
        # the key's options are what the run was coded with; schema-1 files kept a second copy under
        # codec.options, and a file whose two copies differ contradicts itself
        options = key.get("codec_options", codec.get("options", {}))
        if "options" in codec and "codec_options" in key and codec["options"] != key["codec_options"]:
            raise RunError(f"{path}: field 'codec.options' {codec['options']!r:.80} contradicts "
                           f"'run_key.codec_options' {key['codec_options']!r:.80}; a run has one set of options")
        return cls(
            path=path,
            codec=_text(codec.get("name"), path, "codec.name"),
            codec_version=_text(codec.get("version", ""), path, "codec.version"),
            family=_optional_text(codec.get("family"), path, "codec.family"),
            input_kind=_text(codec.get("input_kind", "frame10"), path, "codec.input_kind"),
            options=_text_map(options, path, "run_key.codec_options"),
            dataset=_text(dataset.get("name"), path, "dataset.name"),
            dataset_root=_text(dataset.get("root", ""), path, "dataset.root"),
            synthetic=_flag(dataset.get("synthetic", False), path, "dataset.synthetic"),
            quant_rule=_optional_text(key.get("quant_rule"), path, "run_key.quant_rule"),
            model_fingerprints=_text_map(key.get("model_fingerprints", {}), path, "run_key.model_fingerprints"),
            raw=data,
        )


def read_run_meta(run_dir: Path) -> RunMeta:
    """The typed run.json of a run directory (or bundle); RunError naming the file and field."""
    return RunMeta.from_dict(load_run_meta(Path(run_dir)), Path(run_dir) / "run.json")


def _text(value: Any, path: Path, name: str) -> str:
    if not isinstance(value, str):
        raise RunError(f"{path}: field '{name}' must be a string, found {value!r:.60}")
    return value


def _optional_text(value: Any, path: Path, name: str) -> str | None:
    return None if value is None else _text(value, path, name)


def _flag(value: Any, path: Path, name: str) -> bool:
    if not isinstance(value, bool):
        raise RunError(f"{path}: field '{name}' must be true or false, found {value!r:.60}")
    return value


def _text_map(value: Any, path: Path, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise RunError(f"{path}: field '{name}' must map names to strings, found {value!r:.60}")
    return dict(value)
