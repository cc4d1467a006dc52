"""crosscheck.json: a second lab's verdict on one bundle (`harness crosscheck`).

The leaderboard reads these from wherever they were put, so they are hostile input too: a report
counts only when it is well-formed, names the bundle's sha256, holds every check a crosscheck
makes, and its verdict is the one its checks give (a hand-edited "pass" over failing checks is
refused, not shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.formats.base import FormatError, Fields, plain, read_json

SCHEMA = "fcm-harness-crosscheck/2"
MAX_BYTES = 32 << 20
VERDICTS = ("pass", "warn", "skip", "fail")
OUTCOMES = ("pass", "pass with notes", "fail")
# every crosscheck makes these (others, e.g. re-encode, only when asked for)
REQUIRED_CHECKS = ("integrity", "manifest", "records", "plugin", "models", "dataset", "coverage", "decode",
                   "distortion", "bpfp", "metrics", "bd-rates", "sheet")
MAX_PROBLEMS = 200  # a report lists at most this many problems per check (and says how many more)


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: str
    summary: str
    problems: tuple[str, ...]
    seconds: float = 0.0  # wall time the check took (where a crosscheck spends its time)


def outcome(checks: tuple[CheckResult, ...] | list[CheckResult]) -> str:
    """The verdict a list of checks gives: any fail fails; all pass passes; else pass with notes."""
    if any(c.verdict == "fail" for c in checks):
        return "fail"
    return "pass" if all(c.verdict == "pass" for c in checks) else "pass with notes"


@dataclass(frozen=True)
class CrosscheckReport:
    bundle: str  # the bundle's file name as the checker saw it (display only)
    bundle_sha256: str  # of its SHA256SUMS: which bundle was checked ('' when unreadable)
    harness_version: str
    checker: str  # who checked (--checker), '' when not given
    codec: str
    codec_version: str
    ctc_sha256: str
    dataset: str
    samples: str  # 'all' or N per task
    seed: int
    accepted: tuple[str, ...]  # gaps the checker accepted by name (subset, no-dataset, ...)
    options_used: tuple[tuple[str, str], ...]  # the codec options the decoders ran with
    options_ignored: tuple[str, ...]  # bundle options not taken (programs, paths, local settings)
    checks: tuple[CheckResult, ...]

    @property
    def verdict(self) -> str:
        return outcome(self.checks)

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)


def report_json(report: CrosscheckReport) -> dict[str, Any]:
    """The one writer's JSON (the verdict is derived, stored for readers of the raw file)."""
    return plain({
        "schema": SCHEMA, "bundle": report.bundle, "bundle_sha256": report.bundle_sha256,
        "harness_version": report.harness_version, "checker": report.checker,
        "codec": {"name": report.codec, "version": report.codec_version}, "ctc_sha256": report.ctc_sha256,
        "dataset": report.dataset, "samples": report.samples, "seed": report.seed, "accepted": report.accepted,
        "options_used": dict(report.options_used), "options_ignored": report.options_ignored,
        "verdict": report.verdict, "ok": report.ok,
        "checks": [{"name": c.name, "verdict": c.verdict, "summary": c.summary, "problems": c.problems,
                    "seconds": round(c.seconds, 3)} for c in report.checks],
    })


def parse_report(data: Any, path: Path) -> CrosscheckReport:
    top = Fields(data, path)
    schema = top.text("schema", max_length=80)
    if schema != SCHEMA:
        raise top.fail("schema", f"is {schema[:40]!r}; this harness reads {SCHEMA} (crosscheck the bundle again)")
    checks = []
    for item in top.tables("checks", max_items=100):
        verdict = item.text("verdict", max_length=20)
        if verdict not in VERDICTS:
            raise item.fail("verdict", f"is {verdict!r}; one of {', '.join(VERDICTS)}")
        problems = item.texts("problems", max_items=MAX_PROBLEMS + 1, max_length=4000)
        checks.append(CheckResult(item.text("name", max_length=40), verdict, item.text("summary", ""), problems,
                                  item.number("seconds", 0.0)))
    codec = top.table("codec")
    sha = top.text("bundle_sha256", max_length=64)
    if len(sha) not in (0, 64) or not all(c in "0123456789abcdef" for c in sha):
        raise top.fail("bundle_sha256", "must be a sha256 or empty")
    report = CrosscheckReport(
        bundle=top.text("bundle", max_length=255), bundle_sha256=sha,
        harness_version=top.text("harness_version", max_length=80), checker=top.text("checker", "", max_length=200),
        codec=codec.text("name", "", max_length=200),
        codec_version=codec.text("version", "", max_length=80), ctc_sha256=top.text("ctc_sha256", "", max_length=64),
        dataset=top.text("dataset", "", max_length=200), samples=top.text("samples", "all", max_length=20),
        seed=top.integer("seed", 0, maximum=1 << 31), accepted=top.texts("accepted", max_items=20, max_length=40),
        options_used=tuple(top.text_map("options_used", max_length=2000).items()),
        options_ignored=top.texts("options_ignored", max_items=100, max_length=200),
        checks=tuple(checks))
    stated = top.text("verdict", max_length=20)
    if stated != report.verdict:
        raise top.fail("verdict", f"is {stated!r}, but its checks give {report.verdict!r}")
    return report


def read_report(path: Path) -> CrosscheckReport:
    """A typed crosscheck.json; FormatError naming the file and field."""
    return parse_report(read_json(Path(path), MAX_BYTES), Path(path))


def counts_for(report: CrosscheckReport, bundle_sha256: str) -> str | None:
    """None when `report` is a complete crosscheck of the bundle with `bundle_sha256`, else why not."""
    if report.bundle_sha256 != bundle_sha256:
        return "it is about another bundle (its bundle_sha256 differs)"
    missing = [name for name in REQUIRED_CHECKS if report.check(name) is None]
    if missing:
        return f"it lacks the check(s) {', '.join(missing)}"
    return None


__all__ = ["CheckResult", "CrosscheckReport", "FormatError", "REQUIRED_CHECKS", "outcome", "parse_report",
           "read_report", "report_json", "counts_for"]
