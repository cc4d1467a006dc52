"""The run directory: one record per finished job, and the tidy result table.

    RUN/run.json                                   provenance and the run key
    RUN/bitstreams/<task>/<rate>/<sample>.bin      exactly the bytes counted
    RUN/records/<task>/<rate>/<sample>.json        one job's result row
    RUN/results.csv                                all rows (rebuilt from records)

A job counts as done only when its record is on disk (written atomically, after
its bitstream), so an interrupted run loses nothing already finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
import hashlib
import json
from pathlib import Path

import pandas as pd

from harness.npyio import atomic_write_json, atomic_write_text, read_csv_checked


@dataclass
class ResultRecord:
    """One row of the result table. Units are in the names."""

    codec: str
    codec_version: str
    task: str
    rate_parameter: str
    rate_point: float
    sample: str
    status: str = "ok"  # "ok" or "failed"
    error: str = ""
    shape: str = ""
    points: int = 0
    frame_height: int = 0
    frame_width: int = 0
    bytes: int = 0
    bits: int = 0
    bpfp: float = float("nan")
    enc_cpu_s: float = float("nan")
    enc_wall_s: float = float("nan")
    dec_cpu_s: float = float("nan")
    dec_wall_s: float = float("nan")
    mse: float = float("nan")
    frame_psnr_db: float = float("nan")
    constant_recon: bool = False
    bitstream_sha256: str = ""
    recon_sha256: str = ""
    bitstream_path: str = ""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)


COLUMNS = ResultRecord.columns()
# what a results.csv read back must have (older tables may lack later columns)
RESULT_COLUMNS = ("codec", "task", "rate_parameter", "rate_point", "sample", "status")
RESULT_NUMBERS = ("rate_point", "points", "bytes", "bits", "bpfp", "mse", "enc_wall_s", "dec_wall_s")
METRICS_COLUMNS = ("task", "rate_point", "metric", "value")
METRICS_NUMBERS = {"value": (), "rate_point": ("orig",)}


@dataclass(frozen=True)
class JobPaths:
    bitstream: Path
    record: Path
    relative_bitstream: str


def job_paths(run_dir: Path, task: str, rate_label: str, sample: str) -> JobPaths:
    rel = Path("bitstreams") / task / rate_label / f"{sample}.bin"
    return JobPaths(run_dir / rel, run_dir / "records" / task / rate_label / f"{sample}.json", rel.as_posix())


def write_record(path: Path, record: ResultRecord) -> None:
    atomic_write_json(path, record.to_dict())


def read_record(path: Path) -> ResultRecord | None:
    """The record at `path`, or None when missing or unreadable (then the job is redone)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ResultRecord(**{k: data[k] for k in COLUMNS if k in data})
    except (OSError, ValueError, TypeError):
        return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_complete(run_dir: Path, record: ResultRecord | None) -> bool:
    """A finished job: an ok record whose bitstream is on disk with the recorded hash."""
    if record is None or record.status != "ok" or not record.bitstream_path:
        return False
    try:
        data = (run_dir / record.bitstream_path).read_bytes()
    except OSError:
        return False
    return len(data) == record.bytes and sha256_bytes(data) == record.bitstream_sha256


def collect_records(run_dir: Path) -> list[ResultRecord]:
    records = []
    for path in sorted((run_dir / "records").rglob("*.json")):
        record = read_record(path)
        if record is not None:
            records.append(record)
    return records


def records_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_dict() for r in records], columns=COLUMNS)
    return frame.sort_values(["codec", "task", "rate_point", "sample"], kind="stable").reset_index(drop=True)


def write_table(run_dir: Path) -> pd.DataFrame:
    """Rebuild results.csv from the records on disk (atomically) and return it."""
    frame = records_frame(collect_records(run_dir))
    atomic_write_text(run_dir / "results.csv", frame.to_csv(index=False, float_format="%.10g"))
    return frame


def read_table(run_dir: Path) -> pd.DataFrame:
    """The run's rows: results.csv, unless a job record is newer (a run killed before it could
    rewrite the table), then the records themselves, which are the truth."""
    path = run_dir / "results.csv"
    if path.exists():
        written = path.stat().st_mtime
        if not any(p.stat().st_mtime > written for p in (run_dir / "records").rglob("*.json")):
            return read_csv_checked(path, "result table", RESULT_COLUMNS, RESULT_NUMBERS)
    return records_frame(collect_records(run_dir))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (codec, task, rate point): dataset BPFP = mean of per-sample BPFP, mean MSE, times."""
    ok = frame[frame["status"] == "ok"]
    grouped = ok.groupby(["codec", "task", "rate_parameter", "rate_point"], sort=True)
    return grouped.agg(samples=("sample", "count"), bpfp=("bpfp", "mean"), mse=("mse", "mean"),
                       enc_wall_s=("enc_wall_s", "mean"), dec_wall_s=("dec_wall_s", "mean"),
                       constant_recon=("constant_recon", "sum")).reset_index()


def primary_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, rate point) of metrics.csv: the head's main metric, which curves and
    BD-rates use (a head may add secondary metrics as further rows)."""
    if "primary" not in metrics.columns:  # metrics.csv from before secondary metrics existed
        return metrics
    return metrics[metrics.primary.astype(str).str.lower() == "true"]


SECONDARY_PREFIX = "secondary_"


def secondary_columns(metrics: pd.DataFrame) -> pd.DataFrame:
    """The secondary metrics of metrics.csv (all but the primary) as columns `secondary_<name>`, one row
    per (task, rate point), rate points other than `orig` as floats; empty when there are none."""
    none = pd.DataFrame({"task": pd.Series(dtype=object), "rate_point": pd.Series(dtype=float)})
    if "primary" not in metrics.columns:
        return none
    extra = metrics[(metrics.primary.astype(str).str.lower() != "true") & (metrics.rate_point.astype(str) != "orig")]
    if extra.empty:
        return none
    table = extra.assign(rate_point=extra.rate_point.astype(float)).pivot_table(
        index=["task", "rate_point"], columns="metric", values="value", aggfunc="first")
    table.columns = [SECONDARY_PREFIX + str(c) for c in table.columns]
    return table.reset_index()
