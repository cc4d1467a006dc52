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

SHEET_SCHEMA = "fcm-harness-sheet/2"  # 2: BD-rates on PSNR (dB) with bootstrap intervals; MSE only when asked

#: the axes a summary row has a BD-rate on (harness.comparison): the task metric, PSNR in dB
#: (-10*log10 feature MSE) and linear feature MSE (empty unless asked for by name)
BD_AXES: tuple[str, ...] = ("metric", "psnr", "mse")

#: a BD-rate in percent and the bounds of its bootstrap interval (empty where it is withheld)
BD_COLUMNS: tuple[str, ...] = tuple(f"bd_rate_{on}_{part}" for on in BD_AXES for part in ("percent", "low", "high"))

#: sheet.csv, in this column order; `section` is "point" (one rate point of one curve) or
#: "summary" (one task, or "mean", against one anchor).
COLUMNS: tuple[str, ...] = (
    "section", "task", "curve", "role", "anchor", "rate_index", "rate_point", "samples", "bpfp", "metric",
    "metric_name", "mse", "enc_s", "dec_s", *BD_COLUMNS, "enc_time_ratio", "dec_time_ratio", "time_points", "note",
)

#: The columns of one rate-point block in a task's worksheet, with their headings.
POINT_BLOCK: tuple[tuple[str, str], ...] = (
    ("rate_point", "rate point"), ("bpfp", "BPFP"), ("metric", "metric"), ("mse", "feature MSE"),
    ("enc_s", "encode s"), ("dec_s", "decode s"), ("samples", "samples"),
)

_AXIS_LABEL = {"metric": "metric", "psnr": "PSNR dB", "mse": "linear MSE"}

#: The summary worksheet: per task and the mean, against each anchor (axes no row has are left out).
SUMMARY_BLOCK: tuple[tuple[str, str], ...] = (
    ("task", "task"), ("anchor", "anchor"),
    *((f"bd_rate_{on}_{part}", f"BD-rate ({_AXIS_LABEL[on]}) %{label}") for on in BD_AXES
      for part, label in (("percent", ""), ("low", " 95 % low"), ("high", " 95 % high"))),
    ("enc_time_ratio", "EncT (test/anchor, geo. mean)"),
    ("dec_time_ratio", "DecT (test/anchor, geo. mean)"), ("time_points", "rate points timed"), ("note", "note"),
)
