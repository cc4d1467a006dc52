"""Which keys a CTC's TOML files may hold: a typo is an error, not a silently ignored key.

A misspelled key (`max_token` for `max_tokens`) would otherwise load fine and fail far
away ("axis 2 must be 1..0" on every sample). Each table lists its keys; `"*"` stands for
a name the CTC chooses (a task, a codec family). Keys in DOC_KEYS are prose for people
(where a number comes from); every other key is read by the loader (tests/test_ctc.py
checks that each one is used).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import difflib
from typing import Any

from harness.errors import CTCError

DOC_KEYS = frozenset({"source", "title"})

CTC_FILE: dict[str, Any] = {
    "ctc": {"name", "version", "title", "source"},
    "quantization": {"source", "bit_depth", "default_rule", "rules"},
    "rate": {"*": {"source", "parameter", "points"}},
    "families": {"*": {"source", "input", "pad_multiple", "aliases"}},
    "bpfp": {"source", "original_bpfp"},
    "anchors": {"source", "names"},
    "bd": {"source", "min_overlap"},
}

TASK_KEYS = {"title", "source", "model", "model_dir", "split_point", "shape", "dtype", "packing",
             "sample_lists", "sample_list_format", "metric", "metric_unit", "higher_is_better",
             "samples_paper", "max_leading", "max_tokens", "qps", "truncation", "learned"}
# the learned family's per-task table: its λs and training recipe (harness.training reads the recipe;
# a codec's trainer gets it)
LEARNED_KEYS = {"source", "lambdas", "crop", "batch", "epochs", "training_samples", "steps_per_epoch", "lr",
                "network", "input_gain", "input_center", "input_norm", "warm_start", "warm_start_epochs"}


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """CTCError naming the first unknown key of `table`, with the closest allowed one."""
    allowed = sorted(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
            raise CTCError(f"{where}: unknown key '{key}'{hint}")


def check_tree(table: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> None:
    """Check `table` against a nested schema: a set of leaf keys, or a dict of sub-schemas."""
    check_keys(table, [k for k in schema if k != "*"] if "*" not in schema else table.keys(), where)
    for key, value in table.items():
        sub = schema.get(key, schema.get("*"))
        if isinstance(sub, (set, frozenset)):
            if not isinstance(value, Mapping):
                raise CTCError(f"{where}: [{key}] must be a table, got {value!r}")
            check_keys(value, sub, f"{where} [{key}]")
        elif isinstance(sub, Mapping) and isinstance(value, Mapping):
            check_tree(value, sub, f"{where} [{key}]")


def check_task_keys(task: Mapping[str, Any], families: Iterable[str], where: str) -> None:
    check_keys(task, TASK_KEYS, where)
    if isinstance(task.get("truncation"), Mapping):
        check_keys(task["truncation"], {"source", "original", *families}, f"{where}.truncation")
    if isinstance(task.get("learned"), Mapping):
        check_keys(task["learned"], LEARNED_KEYS, f"{where}.learned")
