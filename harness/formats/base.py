"""What every typed reader of a travelling file shares: a capped, regular-file JSON read and a
field accessor that names the file and the dotted field in its one error."""

from __future__ import annotations

from collections.abc import Mapping
import json
import math
from pathlib import Path
from typing import Any

from harness.errors import RunError
from harness.safe_io import is_sha256, name_problem, read_regular

MAX_TEXT = 4000  # characters of one free-text field (a title, a problem line)


class FormatError(RunError):
    """A travelling file is malformed: names the file and the field."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: Python's json accepts them, JSON does not


def read_json(path: Path, limit: int) -> Any:
    """The JSON value of a regular file of at most `limit` bytes: never follows a final link,
    never blocks on a FIFO, strict JSON (no NaN), bounded nesting."""
    raw = read_regular(Path(path), limit=limit)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise FormatError(f"{path}: nested too deeply to be one of the harness's files") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({str(exc)[:120]})") from None


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class Fields:
    """The fields of one JSON object of `path`, read with their types and ranges checked.
    `prefix` is the object's dotted place in the file (for messages)."""

    def __init__(self, data: Any, path: Path, prefix: str = "") -> None:
        if not isinstance(data, dict):
            where = f"field '{prefix}'" if prefix else "the file"
            raise FormatError(f"{path}: {where} must be a JSON object, found {json_type(data)}")
        self.data, self.path, self.prefix = data, path, prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, problem: str) -> FormatError:
        return FormatError(f"{self.path}: field '{self.name(key)}' {problem}")

    def _get(self, key: str, default: Any) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise self.fail(key, "is missing")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = None, *, max_length: int = MAX_TEXT, empty: bool = True) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise self.fail(key, f"must be text, found {json_type(value)}")
        if len(value) > max_length:
            raise self.fail(key, f"is {len(value)} characters long; at most {max_length}")
        if not empty and not value:
            raise self.fail(key, "is empty")
        return value

    def optional_text(self, key: str, *, max_length: int = MAX_TEXT) -> str | None:
        if self.data.get(key) is None:
            return None
        return self.text(key, max_length=max_length)

    def safe_name(self, key: str, default: Any = None) -> str:
        """Text that may become a file name (one plain path component)."""
        value = self.text(key, default)
        problem = name_problem(value)
        if problem:
            raise self.fail(key, problem)
        return value

    def sha256(self, key: str) -> str:
        value = self._get(key, _REQUIRED)
        if not is_sha256(value):
            raise self.fail(key, f"must be a sha256 (64 lowercase hex digits), found {str(value)[:70]!r}")
        return value

    def flag(self, key: str, default: Any = None) -> bool:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, found {json_type(value)}")
        return value

    def integer(self, key: str, default: Any = None, *, minimum: int = 0, maximum: int = 1 << 62) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, found {json_type(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(key, f"is {value}; must be in {minimum}..{maximum}")
        return value

    def number(self, key: str, default: Any = None, *, nullable: bool = False) -> float | None:
        value = self._get(key, _REQUIRED if default is None else default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number{' or null' if nullable else ''}, found {json_type(value)}")
        return float(value)

    def text_map(self, key: str, *, max_items: int = 1000, max_length: int = MAX_TEXT) -> dict[str, str]:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a JSON object of texts, found {json_type(value)}")
        if len(value) > max_items:
            raise self.fail(key, f"has {len(value)} entries; at most {max_items}")
        for name, item in value.items():
            if not isinstance(item, str) or len(item) > max_length or len(name) > 200:
                raise self.fail(f"{key}.{name[:40]}", f"must be text of at most {max_length} characters")
        return dict(sorted(value.items()))

    def texts(self, key: str, *, max_items: int = 1000, max_length: int = 200) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or len(value) > max_items:
            raise self.fail(key, f"must be a list of at most {max_items} texts")
        if not all(isinstance(v, str) and len(v) <= max_length for v in value):
            raise self.fail(key, f"must hold texts of at most {max_length} characters")
        return tuple(value)

    def table(self, key: str, default: Any = None) -> Fields:
        value = self._get(key, _REQUIRED if default is None else default)
        return Fields(value, self.path, self.name(key))

    def tables(self, key: str, *, max_items: int = 100_000) -> list[Fields]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, found {json_type(value)}")
        if len(value) > max_items:
            raise self.fail(key, f"has {len(value)} entries; at most {max_items}")
        return [Fields(item, self.path, f"{self.name(key)}[{n}]") for n, item in enumerate(value)]

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


_REQUIRED = object()


def plain(value: Any) -> Any:
    """A frozen type's field as JSON: Mappings as sorted dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
