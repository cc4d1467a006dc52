"""`harness crosscheck BUNDLE`: a second lab checks a submission bundle from its bytes alone.

Every file of the bundle is hostile input, and nothing in it chooses what runs here: the codec is
the one installed here (by name and version), options that name programs, paths or local settings
are the checker's own (`Option.local`), the CTC is one of the checker's (by sha256), the anchors are
that CTC's. The bundle is read once into a `Context`; each check has one signature
`(ctx, check)` and declares the checks it needs: a failed or skipped prerequisite skips it with
the reason. Every malformed file is a FAIL row naming file and field, and crosscheck.json is always
written.

    integrity   SHA256SUMS covers every file, every hash matches; no links or special files
    records     every record in its place, results.csv row for row the records, bitstreams
    manifest    typed manifest.json and run.json, each other, the records; the CTC is the checker's
    plugin      the installed codec plugin is the bundle's (version, distribution)
    models      the installed codec's model files are the bundle's (name, size, sha256)
    dataset     the checker's dataset: every record's feature sha256 is the dataset's
    coverage    every task's records cover its sample list at the codec's rate points
    decode      every bitstream decoded in a capped, reused decode-only worker gives its reconstruction
    distortion  feature MSE re-measured from the decoded and the dataset's features
    bpfp        BPFP recomputed from the bytes and the dataset's point counts
    metrics     task metrics re-scored from decoded features (all samples, or a seeded subset)
    re-encode   (asked for) seeded samples re-encoded here give the same bytes
    bd-rates    BD-rates recomputed against the checker's CTC's anchors
    sheet       the result sheet (sheet.csv, sheet.xlsx) recomputed, byte for byte

`pass`, `fail`, `warn` (not a failure, but read it) or `skip` (not checked here, with the reason).
Any `fail` makes the command exit non-zero; so does a check that could not run for want of a
dataset or plugin, unless the checker accepts that by name (`--accept no-dataset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
import shutil
import tempfile
import time

import jinja2

from harness.bundle import SUMS, extract_archive, scrub, write_json, write_text
from harness.crosscheck_checks import (check_bd, check_bpfp, check_coverage, check_dataset, check_decode,
                                       check_distortion, check_integrity, check_manifest, check_metrics,
                                       check_models, check_plugin, check_records, check_reencode, check_sheet)
from harness.crosscheck_context import (ACCEPTABLE, NOT_BIT_EXACT_MSE_TOLERANCE, Check, Context,
                                        CrosscheckRequest)
from harness.errors import HarnessError, OutputError
from harness.formats.crosscheck import CrosscheckReport, outcome, report_json
from harness.npyio import read_csv_checked
from harness.results import METRICS_COLUMNS, METRICS_NUMBERS, collect_records
from harness.safe_io import sha256_regular


@dataclass
class CrosscheckResult:
    bundle: str
    bundle_sha256: str  # of SHA256SUMS: which bundle was checked
    checks: list[Check]
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        return all(c.verdict != "fail" for c in self.checks)

    @property
    def verdict(self) -> str:
        return outcome([c.result() for c in self.checks])


def _guarded(check: Check, step: Callable[[Check], None]) -> Check:
    """A check that meets a malformed file fails with that file's message, and the others go on."""
    start = time.perf_counter()
    try:
        step(check)
    except OutputError:
        raise  # the checker's own disk: no verdict about the bundle, see crosscheck()
    except HarnessError as exc:
        check.fail(str(exc))
    except Exception as exc:  # a plugin's decoder (or a bug here) may raise anything: a row, never a traceback
        check.fail(f"unexpected {type(exc).__name__} in the {check.name} check: {str(exc)[:300]} "
                   "(a fault of the installed plugin or of the harness; the bundle's files were read safely)")
    if check.verdict == "fail" and not check.summary:
        check.summary = check.problems[0] if check.problems else "failed"
    check.seconds = time.perf_counter() - start
    return check


# ---------------------------------------------------------------- the whole check


@dataclass(frozen=True)
class Step:
    """One check: its name, the checks it needs (passed or warned), and what it does."""
    name: str
    needs: tuple[str, ...]
    run: Callable[[Context, Check], None]


def _records_step(ctx: Context, check: Check) -> None:
    ctx.records.extend(collect_records(ctx.root))
    check_records(ctx.root, ctx.records, check)
    if (ctx.root / "metrics.csv").exists():
        ctx.metrics = read_csv_checked(ctx.root / "metrics.csv", "metrics table", METRICS_COLUMNS, METRICS_NUMBERS)


def _bpfp_step(ctx: Context, check: Check) -> None:
    check_bpfp(ctx.root, ctx.ok_records, ctx.points, ctx.metrics, check)


def _reencode_step(ctx: Context, check: Check) -> None:
    check_reencode(ctx.root, ctx.run, ctx.ctc, ctx.ok_records, ctx.source, ctx.request, ctx.options, ctx.work, check)


STEPS = (
    Step("records", (), _records_step),
    Step("manifest", (), check_manifest),
    Step("plugin", ("manifest",), check_plugin),
    Step("models", ("plugin", "records"), check_models),
    Step("dataset", ("manifest", "records"), check_dataset),
    Step("coverage", ("plugin", "dataset?"), check_coverage),  # ?: the checker's dataset is here, whatever it found
    Step("decode", ("records", "plugin", "models"), check_decode),
    Step("distortion", ("decode~", "dataset"), check_distortion),  # ~: a decode to other hashes may go on
    Step("bpfp", ("records",), _bpfp_step),
    Step("metrics", ("decode", "dataset"), check_metrics),
    Step("re-encode", ("decode", "dataset"), _reencode_step),
    Step("bd-rates", ("records", "manifest"), check_bd),
    Step("sheet", ("records", "manifest"), check_sheet),
)


def _blocked(step: Step, done: dict[str, Check], ctx: Context) -> str | None:
    """Why `step` cannot run (a prerequisite failed or was skipped), or None."""
    for need in step.needs:
        name = need.rstrip("~?")
        check = done.get(name)
        if name == "manifest" and ctx.ctc is not None:
            continue  # read and typed: a contradiction it found fails it, and the rest can still be checked
        if need.endswith("?") and name == "dataset" and ctx.source is not None:
            continue
        if check is None:
            return f"not attempted: {name} did not run"
        if need.endswith("~") and check.verdict == "fail" and ctx.mismatched \
                and len(ctx.mismatched) == len(check.problems):
            continue
        if check.verdict in ("fail", "skip"):
            return f"not attempted: the {name} check {'failed' if check.verdict == 'fail' else 'was skipped'}"
    return None


def _not_bit_exact(ctx: Context, decode: Check, distortion: Check) -> None:
    """Every mismatched reconstruction re-measured within tolerance: a float decoder here, not a forgery."""
    near = ctx.not_bit_exact
    mismatched = ctx.mismatched
    if decode.verdict == "fail" and mismatched and distortion.verdict == "pass" and len(near) == len(mismatched):
        decode.verdict = "warn"
        decode.summary = (f"decoder not bit-exact here: {len(near)} reconstruction(s) differ in hash from the "
                          f"records, their MSE agrees within {NOT_BIT_EXACT_MSE_TOLERANCE:g} relative")
        decode.problems = near


def run_checks(ctx: Context, on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check in order; `on_check` sees each as it finishes (a long crosscheck shows progress)."""
    checks = [_guarded(Check("integrity"), lambda c: setattr(ctx, "strange", check_integrity(ctx.root, c)))]
    if on_check:
        on_check(checks[0])
    done: dict[str, Check] = {"integrity": checks[0]}
    for step in STEPS:
        if step.name == "re-encode" and not ctx.request.reencode:
            continue
        check = Check(step.name)
        blocked = ("not attempted: the bundle holds links or special files (integrity)" if ctx.strange
                   else _blocked(step, done, ctx))
        if blocked:
            check.verdict, check.summary = "skip", blocked
        else:
            _guarded(check, lambda c, step=step: step.run(ctx, c))
        checks.append(check)
        done[step.name] = check
        if step.name == "distortion":
            _not_bit_exact(ctx, done["decode"], check)
        if on_check:
            on_check(check)
    return checks


def bundle_root(bundle: Path, work: Path) -> Path:
    """The bundle's directory: as given, or unpacked from its archive into `work`."""
    bundle = Path(bundle)
    if bundle.is_dir():
        return bundle
    if bundle.is_file():
        target = work / "unpacked"
        shutil.rmtree(target, ignore_errors=True)
        return extract_archive(bundle, target)
    raise HarnessError(f"{bundle}: no such bundle (a directory or a .tar made by harness pack)")


def default_out(bundle: Path) -> Path:
    bundle = Path(bundle).absolute()
    name = bundle.name.removesuffix(".tar") or "bundle"
    return bundle.with_name(name + ".crosscheck")


def crosscheck(request: CrosscheckRequest, on_check: Callable[[Check], None] | None = None) -> CrosscheckResult:
    unknown = sorted(set(request.accept) - set(ACCEPTABLE))
    if unknown:
        raise HarnessError(f"--accept {unknown[0]}: not a gap a checker can accept; one of {', '.join(ACCEPTABLE)}")
    bundle = Path(request.bundle).absolute()
    out = Path(request.out) if request.out else default_out(bundle)
    if bundle.is_dir() and out.resolve().is_relative_to(bundle.resolve()):
        raise HarnessError(f"{out}: inside the bundle; a file added to a bundle fails its {SUMS}: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".crosscheck-", dir=out))
    try:
        return _crosscheck(request, bundle, out, work, on_check)
    except OSError as exc:  # the checker's own disk or permissions: nothing was concluded about the bundle
        raise HarnessError(f"the crosscheck could not finish on this machine ({exc.strerror or exc}: "
                           f"{exc.filename or out}); no verdict on the bundle was reached") from None
    except OutputError as exc:
        raise HarnessError(f"the crosscheck could not finish on this machine ({exc}); no verdict on the bundle "
                           "was reached") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _crosscheck(request: CrosscheckRequest, bundle: Path, out: Path, work: Path,
                on_check: Callable[[Check], None] | None = None) -> CrosscheckResult:
    try:
        root = bundle_root(bundle, work)
    except HarnessError as exc:
        checks = [Check("integrity", "fail", str(exc), [str(exc)])]
        result = CrosscheckResult(bundle.name, "", checks, out / "crosscheck.json", out / "crosscheck.html")
        _write_reports(result, None, request)
        return result
    ctx = Context(request, root, work)
    checks = run_checks(ctx, on_check)
    try:
        bundle_sha = sha256_regular(root / SUMS, 64 << 20)
    except HarnessError:
        bundle_sha = ""
    result = CrosscheckResult(bundle.name, bundle_sha, checks, out / "crosscheck.json", out / "crosscheck.html")
    _write_reports(result, ctx, request)
    return result


def _write_reports(result: CrosscheckResult, ctx: Context | None, request: CrosscheckRequest) -> None:
    from harness import __version__

    manifest = ctx.manifest if ctx else None
    report = CrosscheckReport(
        bundle=result.bundle[:255], bundle_sha256=result.bundle_sha256, harness_version=__version__,
        checker=request.checker, codec=manifest.codec.name if manifest else "",
        codec_version=manifest.codec.version if manifest else "", ctc_sha256=manifest.ctc.sha256 if manifest else "",
        dataset=manifest.dataset.name if manifest else "", samples=request.samples, seed=request.seed,
        accepted=tuple(sorted(request.accept)),
        options_used=tuple(sorted(scrub(ctx.options).items())) if ctx else (),  # published: no local paths
        options_ignored=tuple(ctx.ignored) if ctx else (), checks=tuple(c.result() for c in result.checks))
    write_json(result.json_path, report_json(report))
    write_text(result.html_path, render_report_page(report))


def render_report_page(report: CrosscheckReport) -> str:
    """The crosscheck page, rendered from the typed report (the leaderboard renders its copies so)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("harness_reports"))),
                             undefined=jinja2.StrictUndefined, autoescape=True)
    return env.get_template("crosscheck.html.j2").render(report=report, verdict=report.verdict)
