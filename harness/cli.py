"""The `harness` command: a thin typer layer over the library API."""

from __future__ import annotations

from collections.abc import Callable
import functools
from pathlib import Path
import sys
from typing import Annotated, Any, Optional

import typer

from harness import __version__
from harness.errors import HarnessError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Common test conditions and evaluation for large-model feature coding.")

DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="Built-in dataset name (default: demo).")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="Dataset root in the official layout.")]
TaskOpt = Annotated[Optional[list[str]], typer.Option("--task", "-t", help="Task (repeatable); default: all.")]
CtcOpt = Annotated[Optional[Path], typer.Option("--ctc", help="CTC directory or shipped CTC name (paper, mini); default: the dataset's, "
                                                    "else the paper's.")]


def _split_numbers(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise HarnessError(f"--rate-points must be numbers separated by commas, got {text!r}") from None


def _resolve(ctc: Optional[Path], dataset: Optional[str], data_root: Optional[Path]):
    """The CTC in force and the dataset named by --dataset / --data-root."""
    from harness.registry import default_registry
    from harness.sources import resolve_ctc, resolve_dataset

    registry = default_registry()
    spec = resolve_ctc(ctc, dataset, registry)
    return spec, resolve_dataset(dataset, data_root, spec, registry)


def _ctc_of(run_dir: Optional[Path], ctc: Optional[Path]):
    """The CTC a run was coded under (or --ctc, which must match it); the paper's without a run."""
    from harness.ctc import ctc_of_run, load_ctc
    from harness.provenance import load_run_meta

    if run_dir is None:
        return load_ctc(ctc)
    return ctc_of_run(load_run_meta(run_dir), run_dir, ctc)


class _Progress:
    """A tqdm bar driven by (done, total) callbacks, optionally with a stage name."""

    def __init__(self, desc: str, unit: str) -> None:
        from tqdm import tqdm

        self.desc, self.bar = desc, tqdm(desc=desc, unit=unit, file=sys.stderr)

    def __call__(self, *args) -> None:
        *name, done, total = args
        if name:
            self.bar.set_description(f"{self.desc} {name[0]}")
        self.bar.total, self.bar.n = total, done
        self.bar.refresh()

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _options(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise HarnessError(f"codec option must be KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


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
    from harness.runner import RunRequest, execute
    from harness.results import summary

    request = RunRequest(codec=codec, tasks=task, dataset=dataset, data_root=data_root, samples_file=samples,
                         limit=limit, out=out, jobs=jobs, rate_points=_split_numbers(rate_points),
                         codec_options=_options(option), quant_rule=quant_rule, ctc_dir=ctc,
                         command=["harness", *sys.argv[1:]], progress=progress)
    pool = None
    if executor != "local" or scheduler:
        if executor != "dask":
            raise HarnessError(f"unknown executor '{executor}'; available: local, dask (--scheduler needs dask)")
        try:
            from harness.dask_executor import make_executor
        except ImportError:
            raise HarnessError("the dask executor needs: pip install 'fcm-harness[cluster]'") from None
        pool = make_executor("dask", jobs, scheduler)
    try:
        outcome = execute(request, executor=pool)
    finally:
        if pool is not None:
            pool.close()
    typer.echo(f"run directory: {outcome.run_dir}")
    typer.echo(f"jobs: {outcome.planned} planned, {outcome.skipped} already done, {outcome.ran} run, "
               f"{len(outcome.failures)} failed")
    table = summary(outcome.table)
    if not table.empty:
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if evaluate_tasks and outcome.table is not None and (outcome.table.status == "ok").any():
        try:
            _evaluate(outcome.run_dir, heads, weights, progress)
        except HarnessError as exc:
            if heads != "auto" or "missing task-head files" not in str(exc):
                raise
            # coding is done and kept; the metrics can follow once the weights are there
            typer.echo(f"note: task metrics skipped: {exc}; then run: harness evaluate {outcome.run_dir}", err=True)
    if outcome.failures:
        first = outcome.failures[0]
        raise HarnessError(f"{len(outcome.failures)} job(s) failed; first: {first.task}/{first.sample} "
                           f"{first.rate_parameter}{first.rate_point:g}: {first.error} "
                           f"(see {outcome.run_dir / 'results.csv'})")


def _evaluate(run_dir: Path, heads: str, weights: Optional[Path], progress: bool = True) -> None:
    from harness.evaluate import EvaluationRequest, evaluate_run

    metrics = evaluate_run(EvaluationRequest(run_dir, heads, weights, progress=progress))
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
    _evaluate(run_dir, heads, weights)


@app.command()
def plugins() -> None:
    """List codec plugins and datasets: version, input, rate points, source, status."""
    from harness.registry import default_registry

    registry = default_registry()
    typer.echo("codecs:")
    for name, reg in sorted(registry.codecs.items()):
        spec = reg.spec
        points = ("CTC " + ("QPs" if spec.family == "vtm" else "λs per task")) if spec.rate_points is None else (
            ", ".join(f"{p:g}" for p in spec.rate_points) if isinstance(spec.rate_points, tuple) else "per task")
        missing = spec.missing()
        status = "ready" if not missing else f"NOT READY: {missing}"
        typer.echo(f"  {name} {spec.version}  family={spec.family or '-'} input={spec.input_kind} "
                   f"{spec.rate_parameter}: {points}")
        typer.echo(f"      {spec.description}")
        typer.echo(f"      from {reg.source.describe()}; {status}")
    typer.echo("task heads:")
    for name, reg in sorted(registry.heads.items()):
        typer.echo(f"  {name} {reg.spec.version} (task {reg.spec.task}): {reg.spec.description} "
                   f"(from {reg.source.describe()})")
    typer.echo("datasets:")
    for name, reg in sorted(registry.datasets.items()):
        typer.echo(f"  {name} v{reg.spec.version}: {reg.spec.description} (from {reg.source.describe()})")
    problems = [f"broken plugin {b.source.plugin} ({b.source.describe()}): {b.error}" for b in registry.broken]
    problems += registry.codec_conflicts + registry.dataset_conflicts + registry.head_conflicts
    for problem in problems:
        typer.echo(f"  ! {problem}", err=True)
    if registry.codec_conflicts or registry.dataset_conflicts:
        raise typer.Exit(1)


@app.command()
def validate(
    task: TaskOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Check files against this sha256 manifest.")] = None,
    write_manifest: Annotated[Optional[Path], typer.Option(help="Write a sha256 manifest here.")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Check a dataset: every listed sample present, CTC shape/dtype, finite, no pickle."""
    from tqdm import tqdm

    from harness.validate import validate_dataset, write_manifest as write_sha

    spec, source = _resolve(ctc, dataset, data_root)
    tasks = task or source.dataset.available_tasks() or list(spec.tasks)
    with tqdm(desc="validating", unit="file", file=sys.stderr) as bar:
        report = validate_dataset(source.dataset, tasks, manifest, on_file=lambda: bar.update(1))
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
    if write_manifest:
        count = write_sha(source.dataset, tasks, write_manifest)
        typer.echo(f"wrote {count} sha256 entries to {write_manifest}")


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1)] = 2,
) -> None:
    """Re-decode every bitstream of a run in fresh processes and compare reconstructions."""
    from tqdm import tqdm

    from harness.verify import verify_jobs, verify_run

    total = len(verify_jobs(run_dir))
    bad = []
    with tqdm(total=total, desc="verifying", unit="bitstream", file=sys.stderr) as bar:
        def seen(result):
            bar.update(1)
            if not result.ok:
                bad.append(result)
        verify_run(run_dir, workers=jobs, on_result=seen)
    for result in bad:
        typer.echo(f"MISMATCH {result.label}: {result.problem}")
    typer.echo(f"{total - len(bad)} of {total} bitstreams reproduce their recorded reconstruction")
    if bad:
        raise typer.Exit(1)


@app.command()
def preprocess(
    src: Annotated[Path, typer.Argument(help="Feature .npy")],
    dst: Annotated[Path, typer.Argument(help="Raw frame to write (.yuv)")],
    task: Annotated[str, typer.Option("--task", "-t")],
    family: Annotated[str, typer.Option(help="vtm (10-bit uint16 LE) or hyperprior (float32 LE)")] = "vtm",
    quant_rule: Annotated[Optional[str], typer.Option()] = None,
    ctc: CtcOpt = None,
) -> None:
    """Truncate, quantize and pack one feature into a raw frame for an outside codec."""
    from harness.ctc import ctc_with_task
    from harness.rawio import preprocess_file

    width, height = preprocess_file(ctc_with_task(task, ctc), task, family, src, dst, quant_rule)
    typer.echo(f"width {width} height {height}")


@app.command()
def postprocess(
    src: Annotated[Path, typer.Argument(help="Decoded raw frame (.yuv)")],
    dst: Annotated[Path, typer.Argument(help="Reconstructed feature .npy to write")],
    task: Annotated[str, typer.Option("--task", "-t")],
    like: Annotated[Path, typer.Option(help="The original feature .npy (gives shape and dtype)")],
    family: Annotated[str, typer.Option()] = "vtm",
    quant_rule: Annotated[Optional[str], typer.Option()] = None,
    ctc: CtcOpt = None,
) -> None:
    """Unpack and de-quantize a decoded raw frame back to a feature."""
    from harness.ctc import ctc_with_task
    from harness.rawio import postprocess_file

    shape = postprocess_file(ctc_with_task(task, ctc), task, family, src, like, dst, quant_rule)
    typer.echo(f"wrote {dst} {tuple(shape)}")


@app.command("ctc")
def show_ctc(ctc: CtcOpt = None) -> None:
    """Print the test conditions in force (tasks, shapes, ranges, rate points)."""
    from harness.ctc import load_ctc

    spec = load_ctc(ctc)
    typer.echo(f"{spec.title} (ctc {spec.name} {spec.version}, sha256 {spec.sha256[:12]})")
    typer.echo(f"quantization: {spec.bit_depth} bit, rule {spec.default_quant_rule}; QPs "
               + ", ".join(f"{q:g}" for q in spec.qps))
    for t in spec.tasks.values():
        ranges = "; ".join(f"{fam} " + ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(r.lo, r.hi))
                           for fam, r in t.truncation.items())
        typer.echo(f"  {t.name}: {t.model} {t.shape_text} {t.dtype}, pack {t.packing}; {t.metric} "
                   f"({'higher' if t.higher_is_better else 'lower'} is better); {ranges}; "
                   "λ " + ", ".join(f"{v:g}" for v in t.lambdas)
                   + ("; QPs " + ", ".join(f"{q:g}" for q in t.qps) if t.qps else ""))


@app.command()
def compare(
    anchor: Annotated[str, typer.Argument(help="Anchor name (e.g. paper-vtm) or run directory.")],
    test: Annotated[str, typer.Argument(help="Anchor name or run directory to compare against it.")],
    on: Annotated[str, typer.Option(help="metric (task metric) or mse (feature MSE).")] = "metric",
    method: Annotated[str, typer.Option(help="pchip (JVET/MPEG), akima or cubic (VCEG-M33).")] = "pchip",
    policy: Annotated[str, typer.Option(help="Non-monotonic curves: nan (report why) or drop (dominated points).")] = "nan",
    format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    ctc: CtcOpt = None,
) -> None:
    """BD-rate and BD-metric of TEST against ANCHOR, per task and averaged."""
    import json

    from harness.curves import compare as compare_curves, comparison_record, mean_bd_rate, resolve_curve

    runs = [Path(s) for s in (test, anchor) if (Path(s) / "run.json").is_file()]
    spec = _ctc_of(runs[0] if runs else None, ctc)
    if method not in ("pchip", "akima", "cubic") or policy not in ("nan", "drop"):
        raise HarnessError(f"--method must be pchip, akima or cubic and --policy nan or drop; got {method}, {policy}")
    if format not in ("table", "json"):
        raise HarnessError(f"--format must be table or json, got {format!r}")
    a, b = resolve_curve(anchor, spec, on), resolve_curve(test, spec, on)
    for role, curve in (("anchor", a), ("test", b)):  # which file each curve came from
        typer.echo(f"{role} '{curve.name}': {curve.origin}", err=True)
    rows = compare_curves(a, b, on=on, method=method, policy=policy)
    if format == "json":  # strict JSON: null, never NaN
        typer.echo(json.dumps(comparison_record(a, b, rows, on, method, policy), indent=2, allow_nan=False))
        return
    mean, mean_note = mean_bd_rate(rows)
    typer.echo(f"BD of {b.name} against {a.name} on {on} ({method}, non-monotonic policy '{policy}')")
    typer.echo(f"{'task':5} {'BD-rate':>10} {'BD-metric':>10} {'overlap':>8}  note")
    for r in rows:
        rate = f"{r.rate.value:+.2f} %" if r.rate.ok else "n/a"
        metric = f"{r.metric.value:+.4g}" if r.metric.ok else "n/a"
        note = r.rate.reason or "; ".join(n for n in r.rate.notes if "warning" not in n)[:120]
        typer.echo(f"{r.task:5} {rate:>10} {metric:>10} {r.rate.overlap:8.2f}  {note}")
    typer.echo(f"mean  {'n/a' if mean is None else f'{mean:+.2f} %':>10}   ({mean_note})")


@app.command()
def analyze(
    task: TaskOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default analysis/<dataset>).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most N samples per task.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run", help="Add reconstructions decoded from this run.")] = None,
    codec: Annotated[Optional[str], typer.Option(help="Add reconstructions made now with this codec.")] = None,
    rate_point: Annotated[Optional[float], typer.Option(help="Rate point of --run / --codec reconstructions.")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Feature statistics, value histograms (original/truncated/reconstructed), DCT blocks, outlier channels."""
    from harness.analysis import analyze_dataset, codec_reconstructor
    from harness.analysis.runs import run_reconstructor

    spec, source = _resolve(ctc, dataset, data_root)
    tasks = task or source.dataset.available_tasks()
    if (run_dir or codec) and rate_point is None:
        raise HarnessError("--run and --codec need --rate-point (e.g. 32 for QP 32)")
    recon = (run_reconstructor(run_dir, rate_point, spec, source.label) if run_dir else
             codec_reconstructor(spec, codec, rate_point) if codec else None)
    with _Progress("analysing", "feature") as progress:
        summary = analyze_dataset(source.dataset, tasks, out or Path("analysis") / source.label,
                                  progress=progress, reconstruct=recon, limit=limit)
    typer.echo(f"page: {summary['html']} ({summary['seconds']:.1f} s)")


@app.command("truncation-study")
def truncation_study_command(
    codec: Annotated[str, typer.Option("--codec", "-c")],
    task: Annotated[str, typer.Option("--task", "-t")],
    factors: Annotated[str, typer.Option(help="Scale factors of the CTC range, e.g. 0.5,1,2.")] = "0.5,1,2",
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    rate_points: Annotated[Optional[str], typer.Option()] = None,
    out: Annotated[Optional[Path], typer.Option(help="Default studies/<codec>-<task>.")] = None,
    evaluate_tasks: Annotated[bool, typer.Option("--eval/--no-eval")] = True,
) -> None:
    """Rate, distortion and task metric of a codec across truncation ranges (supplement Table 5)."""
    from harness.analysis.truncation import truncation_study

    folder = out or Path("studies") / f"{codec}-{task}"
    table = truncation_study(codec, task, _split_numbers(factors) or [1.0], folder, dataset, data_root, limit,
                             _split_numbers(rate_points), evaluate_tasks)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"table: {folder / 'truncation.csv'}; picture: {folder / 'truncation.png'}")


@app.command()
def generalization(
    codec: Annotated[str, typer.Option("--codec", "-c", help="A learned codec with a model_task option.")],
    task: TaskOpt = None,
    rate_index: Annotated[int, typer.Option(help="Which of each task's rate points (0 = highest rate).")] = 2,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Codec option KEY=VALUE.")] = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Default studies/<codec>-generalization.")] = None,
    evaluate_tasks: Annotated[bool, typer.Option("--eval/--no-eval")] = True,
) -> None:
    """Cross-task matrix of a learned codec: models of task A coding task B (paper Table 6)."""
    from harness.analysis.generalization import generalization_study

    folder = out or Path("studies") / f"{codec}-generalization"
    table = generalization_study(codec, task or ["cls", "seg", "dpt", "csr", "tti"], folder, _options(option),
                                 rate_index, dataset, data_root, limit, evaluate_tasks)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"table: {folder / 'generalization.csv'}; picture: {folder / 'generalization.png'}")


@app.command()
def extract(
    task: Annotated[str, typer.Option("--task", "-t")],
    source: Annotated[Path, typer.Option(
        help="Source data: the sample list and the images (or ARC jsonl; tti: the list or COCO's captions_val2017.json).")],
    out: Annotated[Path, typer.Option(help="Dataset root to write (official layout).")],
    model: Annotated[Path, typer.Option(help="Local model folder (Hugging Face layout): DINOv2-g or Llama-3.")],
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    keep_correct: Annotated[bool, typer.Option(
        help="The paper's selection: cls keeps the images the linear head classifies right (first in list order; "
             "needs --weights), csr the items the model answers right (longest prompts first).")] = False,
    keep: Annotated[Optional[int], typer.Option(
        min=1, help="How many to keep with --keep-correct, or tti captions to select from captions_val2017.json "
                    "(the paper: 500; the released example: 100).")] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="cls --keep-correct: folder (or file) of dinov2_vitg14_linear_head.pth.")] = None,
    steps: Annotated[int, typer.Option(help="tti: denoising steps (CTC: 28).")] = 28,
    size: Annotated[int, typer.Option(help="tti: image size (CTC: 1024).")] = 1024,
) -> None:
    """Extract features at the CTC split points into a dataset in the official layout."""
    from harness.registry import default_registry

    head = default_registry().head_for(task).spec
    if head.extractor is None:
        raise HarnessError(f"the '{task}' head ({head.name}) cannot extract features yet; use the released features")
    run_extract = head.extractor
    options: dict = {"steps": steps, "size": size} if task == "tti" else {}
    options.update({k: v for k, v in (("keep", keep), ("weights", weights)) if v is not None})
    with _Progress(f"extracting {task}", "sample") as progress:
        ids = run_extract(task, source, out, model, limit, keep_correct, progress, **options)
    typer.echo(f"wrote {len(ids)} {task} features under {out}")


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
    from harness.ctc import ctc_with_task
    from harness.registry import default_registry
    from harness.runner import codec_rate_points
    from harness.training import train_codec

    if (features is None) == (not (dataset or data_root)):
        raise HarnessError("give the training features either as --features DIR or as --dataset / --data-root "
                           "(the dataset's <task>/feature_train/train folder, the official layout)")
    if features is None:
        from harness.sources import resolve_ctc, resolve_dataset

        registry = default_registry()
        spec_ctc = resolve_ctc(ctc, dataset, registry)
        spec_ctc.task(task)  # an unknown task is named before a built-in dataset is made
        source = resolve_dataset(dataset, data_root, spec_ctc, registry)
        features = source.dataset.training_dir(task)
        if not features.is_dir():
            raise HarnessError(f"dataset '{source.label}' has no training features for {task}: expected .npy files "
                               f"in {features}; give --features DIR")
    else:
        spec_ctc = ctc_with_task(task, ctc)
    spec = default_registry().codec(codec).spec
    missing = spec.missing()
    if missing:
        raise HarnessError(f"codec '{spec.name}' cannot run here: {missing}")
    points = codec_rate_points(spec, spec_ctc, task) if lam in (None, "all") else _split_numbers(lam)
    size = None
    if crop:
        try:
            size = [int(v) for v in crop.lower().split("x")]
        except ValueError:
            raise HarnessError(f"--crop must be HxW, got {crop!r}") from None
    overrides = {"epochs": epochs, "batch": batch, "crop": size, "steps_per_epoch": steps_per_epoch, "device": device,
                 **_options(option)}
    for point in points:
        result = train_codec(spec, spec_ctc, task, point, features, out or Path("checkpoints") / task, overrides,
                             log=typer.echo)
        typer.echo(f"checkpoint: {result['checkpoint']}")


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
def pack(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    out: Annotated[Optional[Path], typer.Option(help="Bundle directory (the archive is OUT.tar; default ./RUN.bundle).")] = None,
    meta: Annotated[Optional[Path], typer.Option(help="TOML or JSON file: proponent, contact, licence, title, url.")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Pack a run into a deterministic submission bundle (directory and tar) with its manifest."""
    from harness.bundle import pack as pack_run

    result = pack_run(run_dir, out, meta, ctc)
    typer.echo(f"bundle: {result.directory} ({result.files} files)\narchive: {result.archive} ({result.bytes} bytes)\n"
               f"bundle sha256 (of its SHA256SUMS): {result.bundle_sha256}")


@app.command()
def crosscheck(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory or its .tar (harness pack).")],
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    samples: Annotated[str, typer.Option(help="Re-score 'all' samples or N seeded samples per task.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the --samples N subset.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default BUNDLE.crosscheck).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Parallel fresh decoder processes.")] = 2,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-o", help="Codec option KEY=VALUE of this machine (e.g. klt: models=DIR).")] = None,
    heads: Annotated[str, typer.Option(help="Task heads for re-scoring: auto, demo or official.")] = "auto",
    weights: Annotated[Optional[Path], typer.Option(help="Folder of official head weights.")] = None,
    ctc: CtcOpt = None,
) -> None:
    """Check a bundle: hashes, plugin and models, fresh decodes, BPFP, re-scored metrics, BD-rates."""
    from harness.crosscheck import CrosscheckRequest, crosscheck as run_crosscheck

    result = run_crosscheck(CrosscheckRequest(bundle, out, dataset, data_root, samples, seed, jobs, ctc, heads,
                                              weights, tuple(_options(option).items())))
    for check in result.checks:
        typer.echo(f"{check.verdict.upper():5} {check.name}: {check.summary}")
        for problem in check.problems[:5] if check.verdict != "pass" else ():
            typer.echo(f"      {problem}")
    typer.echo(f"verdict: {result.verdict}\nreport: {result.html_path}\njson: {result.json_path}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def leaderboard(
    bundles: Annotated[list[Path], typer.Argument(help="Bundles (directories or .tar) or folders of bundles.")],
    out: Annotated[Path, typer.Option(help="Site folder to write (index.html, leaderboard.json, figures).")],
) -> None:
    """A static leaderboard site: one table per CTC, BD-rates, time ratios, crosscheck status, curves."""
    from harness.leaderboard import build_site

    site = build_site(bundles, out)
    for reason in site.excluded:
        typer.echo(f"left out: {reason}", err=True)
    typer.echo(f"site: {site.html}\ntable: {site.json}\npictures: {len(site.figures)}")


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


if __name__ == "__main__":
    sys.exit(main())
