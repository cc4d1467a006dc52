"""The `harness` command: a thin typer layer over the library API (harness.api).

The commands of a run's life (run, evaluate, verify, compare, train, report, promote) are here;
submissions (pack, crosscheck, leaderboard) in harness/cli_submission.py, data and analysis commands
in harness/cli_tools.py, all on one app (harness/cli_common.py).
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from pathlib import Path
import sys
from typing import Annotated, Any, Optional

import typer

from harness import __version__
from harness.cli_common import (CtcOpt, DataRootOpt, DatasetOpt, TaskOpt, _ctc_of, _options, _split_numbers,
                                app)
from harness.errors import HarnessError


@app.command()
def run(
    codec: Annotated[str, typer.Option("--codec", "-c", help="Codec plugin name (see `harness plugins`).")],
    task: TaskOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    samples: Annotated[Optional[Path], typer.Option(help="File of sample ids, one per line.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N samples per task.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/<dataset>/<codec>).")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Parallel jobs (default: cores).")] = None,
    rate_points: Annotated[Optional[str], typer.Option(help="Rate points by value, e.g. 22,27.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Codec option KEY=VALUE.")] = None,
    quant_rule: Annotated[Optional[str], typer.Option(help="floor (CTC) or unbiased.")] = None,
    ctc: CtcOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    executor: Annotated[str, typer.Option(help="local (process pool) or dask.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler to join, e.g. tcp://HOST:8786.")] = None,
    evaluate_tasks: Annotated[bool, typer.Option("--eval/--no-eval", help="Run the task heads after coding.")] = True,
    heads: Annotated[str, typer.Option(help="Task heads: auto (demo heads on synthetic data), demo or official.")] = "auto",
    weights: Annotated[Optional[Path], typer.Option(help="Folder of official head weights ($FCM_HARNESS_WEIGHTS).")] = None,
) -> None:
    """Code the features with a codec plugin, then evaluate the tasks (resumable)."""
    from harness import api
    from harness.results import summary

    request = api.RunRequest(codec=codec, tasks=task, dataset=dataset, data_root=data_root, samples_file=samples,
                             limit=limit, out=out, jobs=jobs, rate_points=_split_numbers(rate_points),
                             codec_options=_options(option), quant_rule=quant_rule, ctc_dir=ctc,
                             command=["harness", *sys.argv[1:]], progress=progress)
    done = api.run(request, executor, scheduler, evaluate_tasks, heads, weights)
    outcome = done.outcome
    typer.echo(f"run directory: {outcome.run_dir}")
    typer.echo(f"jobs: {outcome.planned} planned, {outcome.skipped} already done, {outcome.ran} run, "
               f"{len(outcome.failures)} failed")
    table = summary(outcome.table)
    if not table.empty:
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if done.metrics is not None:
        _show_metrics(done.metrics)
    if done.skipped_evaluation:  # coding is done and kept; the metrics can follow once the weights are there
        typer.echo(f"note: task metrics skipped: {done.skipped_evaluation}; then run: harness evaluate "
                   f"{outcome.run_dir}", err=True)
    if done.failure_message():
        raise HarnessError(done.failure_message())


def _show_metrics(metrics) -> None:
    typer.echo("task metrics (" + ", ".join(sorted(set(metrics["mode"]))) + "):")
    typer.echo(metrics[["task", "rate_point", "bpfp", "metric", "value", "samples", "mode"]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    heads: Annotated[str, typer.Option(help="auto, demo or official.")] = "auto",
    weights: Annotated[Optional[Path], typer.Option(help="Folder of official head weights.")] = None,
) -> None:
    """Task metrics of a run (writes metrics.csv; cached predictions make it resumable)."""
    from harness import api

    _show_metrics(api.evaluate(api.EvaluationRequest(run_dir, heads, weights)))


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1)] = 2,
    memory_mib: Annotated[Optional[int], typer.Option(
        "--memory-mib", min=0, help="Address-space cap per decoder process in MiB (0: none; default: "
        "$FCM_HARNESS_DECODE_MEMORY_MIB, else a share of RAM, 4-16 GiB).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        min=0, help="Seconds one decode may take (0: no limit; default: $FCM_HARNESS_DECODE_TIMEOUT_S, "
        "else 300).")] = None,
) -> None:
    """Re-decode every bitstream of a run in decode-only processes and compare reconstructions."""
    from tqdm import tqdm

    from harness.decode_pool import DecodeLimits
    from harness.verify import verify_jobs, verify_run

    limits = DecodeLimits.given(jobs, memory_mib, timeout)
    total = len(verify_jobs(run_dir))
    bad = []
    with tqdm(total=total, desc="verifying", unit="bitstream", file=sys.stderr) as bar:
        def seen(result):
            bar.update(1)
            if not result.ok:
                bad.append(result)
        verify_run(run_dir, workers=jobs, on_result=seen, limits=limits)
    for result in bad:
        typer.echo(f"MISMATCH {result.label}: {result.problem}")
    typer.echo(f"{total - len(bad)} of {total} bitstreams reproduce their recorded reconstruction")
    if bad:
        raise typer.Exit(1)


@app.command()
def compare(
    anchor: Annotated[str, typer.Argument(help="Anchor name (e.g. paper-vtm) or run directory.")],
    test: Annotated[str, typer.Argument(help="Anchor name or run directory to compare against it.")],
    on: Annotated[str, typer.Option(help="metric (task metric), psnr (-10*log10 feature MSE in dB, as JVET/MPEG "
                                         "take distortion) or mse (linear feature MSE).")] = "metric",
    method: Annotated[str, typer.Option(help="pchip (JVET/MPEG), akima or cubic (VCEG-M33).")] = "pchip",
    policy: Annotated[str, typer.Option(help="Non-monotonic curves: nan (report why) or drop (dominated points).")] = "nan",
    bootstrap: Annotated[Optional[int], typer.Option(min=0, help="Resamples of the test run's samples for the 95 % "
                                                                 "interval (0: none; default 200).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the bootstrap (default 0).")] = None,
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    ctc: CtcOpt = None,
) -> None:
    """BD-rate and BD-metric of TEST against ANCHOR, per task and averaged, with bootstrap intervals."""
    import json

    from harness import api
    from harness.comparison import table_lines

    if format not in ("table", "json"):
        raise HarnessError(f"--format must be table or json, got {format!r}")
    done = api.compare(anchor, test, on, method, policy, ctc, bootstrap, seed)
    for role, curve in (("anchor", done.anchor), ("test", done.test)):  # which file each curve came from
        typer.echo(f"{role} '{curve.name}': {curve.origin}", err=True)
    if format == "json":  # strict JSON: null, never NaN
        typer.echo(json.dumps(done.record(), indent=2, allow_nan=False))
        return
    for line in table_lines(done.result, on):
        typer.echo(line)


@app.command()
def train(
    codec: Annotated[str, typer.Option("--codec", "-c", help="A learned codec plugin, e.g. hyperprior.")],
    task: Annotated[str, typer.Option("--task", "-t")],
    features: Annotated[Optional[Path], typer.Option(
        help="Folder of .npy training features (default: the dataset's <task>/feature_train/train).")] = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    lam: Annotated[Optional[str], typer.Option("--lambda", help="Rate point (λ); 'all' for the task's five.")] = "all",
    out: Annotated[Optional[Path], typer.Option(help="Checkpoint folder (default checkpoints/<task>).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Default: the CTC's for the task.")] = None,
    batch: Annotated[Optional[int], typer.Option(min=1)] = None,
    crop: Annotated[Optional[str], typer.Option(help="HxW, e.g. 256x256 (default: the CTC's).")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(min=1)] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-o", help="Codec-specific training setting KEY=VALUE (e.g. klt: tail=mini-lm).")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Train a learned codec (CTC settings by default; resumes from the last checkpoint)."""
    from harness import api

    size = None
    if crop:
        try:
            size = [int(v) for v in crop.lower().split("x")]
        except ValueError:
            raise HarnessError(f"--crop must be HxW, got {crop!r}") from None
    overrides = {"epochs": epochs, "batch": batch, "crop": size, "steps_per_epoch": steps_per_epoch, "device": device,
                 **_options(option)}
    request = api.TrainRequest(codec, task, features, dataset, data_root,
                               None if lam in (None, "all") else _split_numbers(lam), out, overrides, ctc)
    for checkpoint in api.train(request, log=typer.echo):
        typer.echo(f"checkpoint: {checkpoint}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    anchor: Annotated[Optional[list[str]], typer.Option(
        "--anchor", "-a", help="Anchor name or run directory (repeatable; default: the CTC's anchors).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default RUN_DIR/report).")] = None,
    method: Annotated[str, typer.Option()] = "pchip",
    policy: Annotated[str, typer.Option()] = "nan",
    ctc: CtcOpt = None,
) -> None:
    """Write the HTML report, xlsx workbook, CSVs and pictures of a run against anchors."""
    from harness.report import build_report

    files = build_report(run_dir, _ctc_of(run_dir, ctc), tuple(anchor) if anchor else None, out, method, policy)
    for line in files.anchors:  # which file each anchor came from
        typer.echo(f"anchor {line}", err=True)
    typer.echo(f"report: {files.html}\nworkbook: {files.workbook}\nBD table: {files.bd_csv}\n"
               f"pictures: {len(files.figures)} in {files.html.parent / 'figures'}")


@app.command()
def promote(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    name: Annotated[str, typer.Argument(help="Anchor name to create.")],
    to: Annotated[Path, typer.Option(help="Directory of anchor sheets (put it in $FCM_HARNESS_ANCHORS).")] = Path("anchors"),
    source: Annotated[Optional[str], typer.Option(
        help="Where the numbers come from (default: codec, tools, dataset and CTC from run.json).")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Save a run's per-rate-point curve as an anchor sheet others can compare against."""
    from harness.curves import promote_run

    path = promote_run(run_dir, name, _ctc_of(run_dir, ctc), to, source)
    typer.echo(f"wrote anchor '{name}' to {path}")


@app.command()
def version() -> None:
    """Print the harness version."""
    typer.echo(__version__)


class Interrupted(Exception):
    """Ctrl-C inside a command, re-raised past typer/click (which would swallow it) to `main`."""


def _keeps_interrupts(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None
    return wrapper


for _info in app.registered_commands:
    _info.callback = _keeps_interrupts(_info.callback)


def _exit_code(code: object) -> int:
    """A SystemExit code as an int (None is success; click never exits with a string)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit code 1, never a traceback.

    Usage errors are left to the command-line framework in standalone mode (usage message, exit
    2), so they stay clean whichever click the installed typer uses (typer >= 0.26 vendors its own:
    catching `click` exceptions here would miss them). Only our own exceptions are caught here.
    """
    try:
        typer.main.get_command(app).main(args=argv, prog_name="harness", standalone_mode=True)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except HarnessError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except Interrupted:
        typer.echo("interrupted: finished jobs are kept; run the same command again to resume", err=True)
        return 130
    except OSError as exc:  # disk full, read-only or vanished output: say which file, keep the rest
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 1
    return 0


from harness import cli_submission, cli_tools  # noqa: E402,F401  (register their commands, after the ones above)

if __name__ == "__main__":
    sys.exit(main())
