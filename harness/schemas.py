"""Versions of the files the harness writes and reads back (run.json, records, results.csv, anchor sheets).

A file written by a newer harness may mean something this one does not know; reading it as if
it were ours would give wrong numbers silently, so it is refused with a message saying so. A file
without a version predates versioning and is version 1. metrics.csv and the report files belong to
their run directory and go with run.json's version.
"""

from __future__ import annotations

from harness.errors import RunError

RUN_JSON = 2  # 2: the codec options only in run_key.codec_options (1 had a second copy in codec.options)
RECORD = 1  # a job record (records/**.json) and a row of results.csv
ANCHOR_SHEET = 1


def check_version(value: object, supported: int, where: str, what: str) -> int:
    """The file's schema version; RunError if it is not a positive integer or newer than `supported`."""
    if value is None or value == "":
        return 1
    try:
        version = int(value)  # JSON number, or CSV text
    except (TypeError, ValueError):
        version = 0
    if version < 1 or str(value).strip() not in (str(version), f"{version}.0"):
        raise RunError(f"{where}: schema {str(value)[:20]!r} is not a version number")
    if version > supported:
        raise RunError(f"{where}: {what} of schema {version}, written by a newer harness (this one reads up to "
                       f"{supported}); upgrade fcm-harness to read it")
    return version
