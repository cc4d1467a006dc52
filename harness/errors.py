"""Errors the harness raises for things a user can fix.

Every `HarnessError` is printed by the CLI as one line and exit code 1, never a
traceback: the message must say what is wrong, where (file, key) and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib


class HarnessError(Exception):
    """A user-facing error: bad input, bad configuration, missing files."""


class CTCError(HarnessError):
    """The test-condition files in ctc/ are invalid (names file and key)."""


class FeatureError(HarnessError):
    """A feature file is unreadable or does not match the test conditions."""


class DatasetError(HarnessError):
    """A dataset is incomplete or laid out wrongly."""


class PluginError(HarnessError):
    """A plugin is broken, duplicated or unknown."""


class MissingHeadFilesError(HarnessError):
    """Official task-head weights are not where the harness looks; coding results stay valid."""


class CodecError(HarnessError):
    """A codec failed or returned something the harness cannot accept."""


class RunError(HarnessError):
    """A run directory cannot be used (unwritable, from another configuration)."""


class TableError(HarnessError):
    """A CSV table the harness reads back (results, metrics, anchors) is malformed."""


class OutputError(RunError):
    """The harness cannot write a file (disk full, read-only, no permission): not a codec fault,
    so a run stops there instead of recording failed jobs."""


def unknown_name(kind: str, name: str, available: Iterable[str]) -> str:
    """'unknown codec 'vcc'; did you mean 'vvc'? available: a, b' (for errors)."""
    choices = sorted(available)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(choices) if choices else "(none)"
    return f"unknown {kind} '{name}'{hint} available: {listing}"
