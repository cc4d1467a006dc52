"""run.json: what produced a run directory, so results carry their own versions."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
import platform
import sys
from typing import Any

from harness import __version__
from harness.errors import RunError
from harness import schemas
from harness.npyio import atomic_write_json


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# the parts of run.json the harness reads: their JSON types, and what a finished description holds
_SECTIONS = {"codec": dict, "ctc": dict, "dataset": dict, "run_key": dict, "invocations": list}
_KEY_SECTIONS = ("dataset_fingerprints", "model_fingerprints", "codec_options")
_REQUIRED = (("codec", "name"), ("ctc", "sha256"), ("dataset", "name"), ("dataset", "root"))


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "run.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"{path}: unreadable run description ({exc}); move it away or use another --out") from None
    _check_sections(data, path)
    schemas.check_version(data.get("schema"), schemas.RUN_JSON, str(path), "a run description")
    return data


def _check_sections(data: Any, path: Path) -> None:
    """The parts read later must have the right JSON types: one line here, not a traceback there."""
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a run description (a JSON object expected, found {_json_type(data)})")
    for section, kind in _SECTIONS.items():
        if section in data and not isinstance(data[section], kind):
            raise RunError(f"{path}: field '{section}' must be a JSON {_json_type(kind())}, "
                           f"found {_json_type(data[section])}")
    for section in _KEY_SECTIONS:
        value = data.get("run_key", {}).get(section, {})
        if not isinstance(value, dict):
            raise RunError(f"{path}: field 'run_key.{section}' must be a JSON object, found {_json_type(value)}")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def load_run_meta(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory, or a clear error when `run_dir` is not one."""
    meta = read_run_json(Path(run_dir))
    if meta is None:
        raise RunError(f"{run_dir}: not a run directory (no run.json)")
    for section, field in _REQUIRED:
        if not isinstance(meta.get(section, {}).get(field), str):
            raise RunError(f"{Path(run_dir) / 'run.json'}: field '{section}.{field}' missing or not a string")
    return meta


def check_resumable(existing: dict[str, Any], key: dict[str, Any], run_dir: Path) -> None:
    """A run directory may only be extended with the same codec, options, CTC and data."""
    old = existing.get("run_key", {})
    for field in ("codec", "codec_version", "codec_options", "ctc_sha256", "quant_rule", "dataset"):
        if old.get(field) != key.get(field):
            raise RunError(f"{run_dir}: holds a run with {field} = {old.get(field)!r}, this run has "
                           f"{key.get(field)!r}; use another --out directory")
    for field, what in (("sample_lists", "the '{}' sample list"),
                        ("model_fingerprints", "the codec's model for {} (e.g. a retrained checkpoint)")):
        for part, fingerprint in key.get(field, {}).items():  # per task / per task@rate point
            previous = old.get(field, {}).get(part)
            if previous and previous != fingerprint:
                raise RunError(f"{run_dir}: {what.format(part)} changed since this run started; "
                               "use another --out directory")


def write_run_json(run_dir: Path, existing: dict[str, Any] | None, key: dict[str, Any],
                   details: dict[str, Any], invocation: dict[str, Any]) -> dict[str, Any]:
    data = dict(existing or {})
    merged_key = dict(key)
    for grown in ("sample_lists", "model_fingerprints"):  # per task / model: a run may grow
        merged_key[grown] = {**(existing or {}).get("run_key", {}).get(grown, {}), **key.get(grown, {})}
    earlier_samples = data.get("dataset", {}).get("samples", {})
    data.update(details)
    if "dataset" in details:  # a run grown task by task (--task sal, then --task lm) counts all its tasks
        data["dataset"] = {**details["dataset"], "samples": {**earlier_samples, **details["dataset"].get("samples", {})}}
    data["run_key"] = merged_key
    data["schema"] = schemas.RUN_JSON
    data["harness_version"] = __version__
    data["machine"] = machine()
    data.setdefault("created", invocation["started"])
    data.setdefault("invocations", []).append(invocation)
    atomic_write_json(run_dir / "run.json", data)
    return data
