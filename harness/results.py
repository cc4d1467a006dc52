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
from dataclasses import MISSING, asdict, dataclass, fields
import hashlib
import io
import json
import math
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError, RunError
from harness import schemas
from harness.npyio import atomic_write_json, atomic_write_text
from harness.safe_io import check_name, inside, is_sha256, read_regular


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
    feature_sha256: str = ""  # of the feature file coded (resume redoes a job whose feature changed)
    schema: int = schemas.RECORD  # what these fields mean (harness.schemas); absent in older files: 1

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def job_label(self) -> str:
        """task/rate point/sample, as messages name a job."""
        return f"{self.task}/{self.rate_parameter}{self.rate_point:g}/{self.sample}"

    @property
    def record_path(self) -> str:
        """Where this record sits in a run directory or bundle, relative to its root."""
        return f"records/{self.job_label}.json"


COLUMNS = ResultRecord.columns()
# The largest bitstream of the paper CTC (depth at QP 22) is tens of MB; a record claiming more than
# this is refused before anything is read (a bitstream is read whole into memory to hash it).
MAX_BITSTREAM_BYTES = 1 << 30
KEY_FIELDS = ("codec", "task", "rate_parameter", "rate_point", "sample", "status")
# what a metrics.csv read back must have
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


MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; anything this big is not one
_FIELD_TYPES = {f.name: type(f.default) if f.default is not MISSING else str for f in fields(ResultRecord)}
_FIELD_TYPES["rate_point"] = float


def _typed(name: str, value: object, where: str) -> object:
    """A field's value as its declared type, from JSON (native) or CSV (text)."""
    kind = _FIELD_TYPES[name]
    try:
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind is bool:
            if isinstance(value, str) and value in ("True", "False", "true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(value, bool):
            raise TypeError
        if kind is int:
            number = float(value) if isinstance(value, str) else value
            if not isinstance(number, (int, float)) or number != int(number):
                raise TypeError
            return int(number)
        if isinstance(value, str) and value == "":
            return math.nan
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise RunError(f"{where}: field '{name}' is {str(value)[:40]!r}, not {kind.__name__}") from None


def record_from_mapping(data: object, where: str) -> ResultRecord:
    if not isinstance(data, dict):
        raise RunError(f"{where}: not a result record (a JSON object is expected)")
    missing = [k for k in KEY_FIELDS if k not in data]
    if missing:
        raise RunError(f"{where}: missing field(s) {', '.join(missing)}")
    schemas.check_version(data.get("schema"), schemas.RECORD, where, "a result record")
    return ResultRecord(**{k: _typed(k, data[k], where) for k in COLUMNS if k in data})


def parse_record(path: Path) -> ResultRecord:
    """The record at `path`; RunError naming the file when it is unreadable or not a record."""
    data = read_regular(path, limit=MAX_RECORD_BYTES)
    if not data.strip():
        raise RunError(f"{path}: empty record ({len(data)} bytes)")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not a valid JSON record ({exc})") from None
    return record_from_mapping(obj, str(path))


def check_record(record: ResultRecord, where: str, location: tuple[str, str, str] | None = None) -> None:
    """Everything a path or a verdict is built from must be sane: names are plain file names, hashes
    are sha256 hex, the bitstream is where the harness puts it, and the record sits at its own key."""
    for field in ("task", "rate_parameter", "sample"):
        check_name(getattr(record, field), where, field)
    if not math.isfinite(record.rate_point):
        raise RunError(f"{where}: field 'rate_point' is {record.rate_point}")
    if record.status not in ("ok", "failed"):
        raise RunError(f"{where}: field 'status' is {record.status[:40]!r}; expected ok or failed")
    label = f"{record.rate_parameter}{record.rate_point:g}"
    if location is not None and location != (record.task, label, record.sample):
        raise RunError(f"{where}: the record is for {record.task}/{label}/{record.sample}, "
                       f"but sits at {'/'.join(location)}")
    if record.status != "ok":
        return
    if record.feature_sha256 and not is_sha256(record.feature_sha256):
        raise RunError(f"{where}: field 'feature_sha256' is not a sha256 hex digest")
    for field in ("bitstream_sha256", "recon_sha256"):
        if not is_sha256(getattr(record, field)):
            raise RunError(f"{where}: field '{field}' is not a sha256 hex digest")
    expected = job_paths(Path("."), record.task, label, record.sample).relative_bitstream
    if record.bitstream_path != expected:
        raise RunError(f"{where}: field 'bitstream_path' is {record.bitstream_path[:80]!r}; "
                       f"the harness keeps this job's bitstream at {expected}")
    if record.bytes < 0 or record.bits != 8 * record.bytes:
        raise RunError(f"{where}: fields 'bits' ({record.bits}) and 'bytes' ({record.bytes}) disagree")


def read_record(path: Path) -> ResultRecord | None:
    """The record at `path` when it is readable, valid and in its place, else None: for resuming a
    run, where such a job is simply redone. Readers that report results use `collect_records`."""
    try:
        record = parse_record(path)
        check_record(record, str(path), _location(path))
    except HarnessError:
        return None
    return record


def _location(path: Path) -> tuple[str, str, str]:
    """(task, rate label, sample) of records/<task>/<rate>/<sample>.json."""
    return path.parent.parent.name, path.parent.name, path.name.removesuffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bitstream(run_dir: Path, record: ResultRecord) -> bytes:
    """A job's stored bitstream (see `read_stored`)."""
    where = f"{run_dir}: record {record.task}/{record.rate_parameter}{record.rate_point:g}/{record.sample}"
    return read_stored(Path(run_dir), record.bitstream_path, record.bytes, record.bitstream_sha256, where)


def read_stored(run_dir: Path, relative: str, size: int, sha256: str, where: str) -> bytes:
    """Stored bytes only from the run's own bitstreams/ tree, only a regular file of the recorded
    size, and only when its sha256 is the recorded one."""
    if not 0 <= size <= MAX_BITSTREAM_BYTES:
        raise RunError(f"{where}: field 'bytes' is {size}; a bitstream is read whole, so at most {MAX_BITSTREAM_BYTES}")
    path = inside(run_dir, relative, where, "bitstream_path")
    if not path.resolve().is_relative_to((run_dir / "bitstreams").resolve()):
        raise RunError(f"{where}: field 'bitstream_path' is outside the run's bitstreams/")
    data = read_regular(path, size=size)
    if sha256_bytes(data) != sha256:
        raise RunError(f"{path}: bytes differ from the sha256 in its record")
    return data


def is_complete(run_dir: Path, record: ResultRecord | None) -> bool:
    """A finished job: an ok record whose bitstream is on disk with the recorded size and hash."""
    if record is None or record.status != "ok" or not record.bitstream_path:
        return False
    try:
        read_bitstream(run_dir, record)
    except HarnessError:
        return False
    return True


def collect_records(run_dir: Path) -> list[ResultRecord]:
    """Every record of the run. An unreadable, empty, misplaced or invalid record is an error naming
    the file, never silently left out (a count that drops rows would be a wrong answer)."""
    root = run_dir / "records"
    records = []
    for path in sorted(root.rglob("*.json")):
        if len(path.relative_to(root).parts) != 3:
            raise RunError(f"{path}: not where a record belongs (records/<task>/<rate>/<sample>.json)")
        record = parse_record(path)
        check_record(record, str(path), _location(path))
        records.append(record)
    return records


def records_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_dict() for r in records], columns=COLUMNS)
    return frame.sort_values(["codec", "task", "rate_point", "sample"], kind="stable").reset_index(drop=True)


def write_table(run_dir: Path) -> pd.DataFrame:
    """Rebuild results.csv from the records on disk (atomically) and return it."""
    frame = records_frame(collect_records(run_dir))
    atomic_write_text(run_dir / "results.csv", frame.to_csv(index=False))  # floats round-trip exactly
    return frame


def read_table(run_dir: Path) -> pd.DataFrame:
    """The run's rows: results.csv, unless a job record is newer (a run killed before it could
    rewrite the table), then the records themselves, which are the truth. Either way every row is
    checked as a record is, and a job listed twice is an error naming the file."""
    path = run_dir / "results.csv"
    if path.exists():
        written = path.stat().st_mtime
        if not any(p.stat().st_mtime > written for p in (run_dir / "records").rglob("*.json")):
            return records_frame(_table_records(path))
    return records_frame(collect_records(run_dir))


def table_records(path: Path) -> list[ResultRecord]:
    """The rows of a results.csv as checked records (a crosscheck compares them with the records)."""
    return _table_records(path)


def _table_records(path: Path) -> list[ResultRecord]:
    try:
        text = read_regular(path).decode("utf-8")
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RunError(f"{path}: not a readable result table ({str(exc).splitlines()[0][:120]})") from None
    missing = [c for c in KEY_FIELDS if c not in frame.columns]
    if missing:
        raise RunError(f"{path}: missing column(s) {', '.join(missing)}")
    records, seen = [], {}
    for number, row in enumerate(frame.to_dict("records"), 2):  # line 1 is the header
        where = f"{path}:{number}"
        record = record_from_mapping(row, where)
        check_record(record, where)
        key = (record.task, record.rate_parameter, record.rate_point, record.sample)
        if key in seen:
            raise RunError(f"{path}: job {record.task}/{record.rate_parameter}{record.rate_point:g}/{record.sample} "
                           f"is listed twice (lines {seen[key]} and {number})")
        seen[key] = number
        records.append(record)
    return records


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
