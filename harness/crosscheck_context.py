"""What a crosscheck holds while it runs: the request, the bundle as read once (`Context`), one
check's result (`Check`) and the tolerances the checks apply (`harness.crosscheck` runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ctc import CTC
from harness.formats.crosscheck import MAX_PROBLEMS, CheckResult
from harness.formats.manifest import Manifest
from harness.results import ResultRecord
from harness.run_meta import RunMeta


# Re-scoring runs the task heads on another machine: bit-identical decoded features (checked by
# hash) can still give slightly different floats there (BLAS threading, onnxruntime kernels), so
# metrics agree within a relative tolerance per task (absolute floor for values near zero). FID
# (tti) sums over a covariance and drifts most.
METRIC_TOLERANCE: dict[str, tuple[float, float]] = {"default": (1e-4, 1e-6), "tti": (1e-2, 1e-3)}
BPFP_TOLERANCE = 1e-9  # BPFP is arithmetic on integers: only float formatting may differ
BD_TOLERANCE = 1e-6  # percent: the same numbers through the same code
# Feature MSE from the same reconstruction through the same code: only summation order may differ.
MSE_TOLERANCE = 1e-6
# A reconstruction whose hash differs (a float decoder on another machine) is accepted as "not
# bit-exact here" when its MSE is within this relative distance of the claimed one.
NOT_BIT_EXACT_MSE_TOLERANCE = 1e-2
VERDICTS = ("pass", "warn", "skip", "fail")
ACCEPTABLE = ("subset", "no-dataset", "no-plugin")  # gaps a checker may accept by name (--accept)


@dataclass
class Check:
    name: str
    verdict: str = "pass"
    summary: str = ""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, problem: str) -> None:
        self.verdict = "fail"
        self.problems.append(problem)

    def warn(self, problem: str) -> None:
        self.verdict = "warn" if self.verdict == "pass" else self.verdict
        self.problems.append(problem)

    def result(self) -> CheckResult:
        shown = self.problems[:MAX_PROBLEMS]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS} more")
        return CheckResult(self.name, self.verdict, self.summary, tuple(shown), self.seconds)


@dataclass(frozen=True)
class CrosscheckRequest:
    bundle: Path
    out: Path | None = None
    dataset: str | None = None
    data_root: Path | None = None
    samples: str = "all"  # "all" or a number of samples per task (seeded)
    seed: int = 0
    jobs: int = 2
    ctc_dir: Path | None = None
    heads: str = "auto"
    weights: Path | None = None
    options: tuple[tuple[str, str], ...] = ()  # -o KEY=VALUE: the checker's own values (e.g. models=DIR)
    reencode: int = 0  # re-encode N seeded samples per task at every rate point (0: no encoder check)
    accept: tuple[str, ...] = ()  # gaps accepted by name (ACCEPTABLE)
    checker: str = ""  # who checks (shown on the report and the leaderboard)


SCRUBBED = "<path>"


@dataclass
class Context:
    """The bundle as read once: each check reads what earlier checks put here."""
    request: CrosscheckRequest
    root: Path
    work: Path
    strange: tuple[str, ...] = ()  # links and special files found by the integrity check
    manifest: Manifest | None = None
    run: RunMeta | None = None
    ctc: CTC | None = None
    records: list[ResultRecord] = field(default_factory=list)
    spec: Any = None  # the installed CodecSpec
    options: dict[str, str] = field(default_factory=dict)  # what the decoders here run with
    ignored: list[str] = field(default_factory=list)  # bundle options not taken
    source: Any = None  # the checker's DatasetSource
    points: dict[tuple[str, str], int] | None = None
    decoded: dict[str, Any] = field(default_factory=dict)  # job label -> DecodeResult (hash, MSE)
    not_bit_exact: list[str] = field(default_factory=list)  # decoded to other hashes, MSE agrees (figures)

    @property
    def mismatched(self) -> list[Any]:
        """Decodes that worked but gave a reconstruction of another hash than the recorded one."""
        return [r for r in self.decoded.values() if r.mismatch]
    metrics: Any = None  # metrics.csv, checked
    comparison: Any = None  # the bundle against the checker's anchors (harness.comparison), made once

    @property
    def ok_records(self) -> list[ResultRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def codec_name(self) -> str:
        return self.manifest.codec.name if self.manifest else ""


def codec_options(ctx: Context) -> tuple[dict[str, str], list[str]]:
    """The bundle's coding options with the checker's -o values on top; options that name programs,
    paths or settings of the packing machine (Option.local) are never taken from the bundle."""
    from harness.options import coding_options

    assert ctx.run is not None and ctx.spec is not None
    kept, ignored = coding_options(ctx.spec.options, ctx.run.options)
    return {**kept, **dict(ctx.request.options)}, ignored

