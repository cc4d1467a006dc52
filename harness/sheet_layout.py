"""The standardized result sheet's layout, as data.

Why here and not in ctc/<name>/: every .toml under a CTC folder goes into the CTC's sha256,
which every run.json, anchor sheet and bundle names and by which a run finds its CTC again
(harness.ctc.ctc_of_run). A sheet.toml there would give the shipped CTCs new hashes and orphan
every existing run. The layout is presentation, not a test condition, so it lives with the
code; the CTC decides only *which* anchors the sheet holds (its [anchors] names).

One tidy table (sheet.csv) holds every number; the workbook (sheet.xlsx) shows the same rows:
a summary sheet and, per task, one block per anchor and one for the test.
"""

from __future__ import annotations

SHEET_SCHEMA = "fcm-harness-sheet/1"

#: sheet.csv, in this column order; `section` is "point" (one rate point of one curve) or
#: "summary" (one task, or "mean", against one anchor).
COLUMNS: tuple[str, ...] = (
    "section", "task", "curve", "role", "anchor", "rate_index", "rate_point", "samples", "bpfp", "metric",
    "metric_name", "mse", "enc_s", "dec_s", "bd_rate_metric_percent", "bd_rate_mse_percent", "enc_time_ratio",
    "dec_time_ratio", "time_points", "note",
)

#: The columns of one rate-point block in a task's worksheet, with their headings.
POINT_BLOCK: tuple[tuple[str, str], ...] = (
    ("rate_point", "rate point"), ("bpfp", "BPFP"), ("metric", "metric"), ("mse", "feature MSE"),
    ("enc_s", "encode s"), ("dec_s", "decode s"), ("samples", "samples"),
)

#: The summary worksheet: per task and the mean, against each anchor.
SUMMARY_BLOCK: tuple[tuple[str, str], ...] = (
    ("task", "task"), ("anchor", "anchor"), ("bd_rate_metric_percent", "BD-rate (metric) %"),
    ("bd_rate_mse_percent", "BD-rate (MSE) %"), ("enc_time_ratio", "EncT (test/anchor, geo. mean)"),
    ("dec_time_ratio", "DecT (test/anchor, geo. mean)"), ("time_points", "rate points timed"), ("note", "note"),
)
