"""`harness` commands for data, test conditions and analyses (validate, preprocess, postprocess, ctc,
plugins, analyze, truncation-study, generalization, extract); registered on the app of harness.cli."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Annotated, Optional

import typer

from harness.cli_common import (CtcOpt, DataRootOpt, DatasetOpt, TaskOpt, _options, _Progress, _resolve,
                                _split_numbers, app)
from harness.errors import HarnessError


@app.command()
def plugins() -> None:
    """List codec plugins and datasets: version, input, rate points, source, status."""
    from harness.registry import default_registry

    registry = default_registry()
    for line in _codec_lines(registry):
        typer.echo(line)
    typer.echo("task heads:")
    for name, reg in sorted(registry.heads.items()):
        typer.echo(f"  {name} {reg.spec.version} (task {reg.spec.task}): {reg.spec.description} "
                   f"(from {reg.source.describe()})")
    typer.echo("datasets:")
    for name, reg in sorted(registry.datasets.items()):
        typer.echo(f"  {name} v{reg.spec.version}: {reg.spec.description} (from {reg.source.describe()})")
    problems = [f"broken plugin {b.source.plugin} ({b.source.describe()}): {b.error}" for b in registry.broken]
    problems += [str(c) for c in (*registry.codec_conflicts, *registry.dataset_conflicts, *registry.head_conflicts)]
    for problem in problems:
        typer.echo(f"  ! {problem}", err=True)
    if registry.codec_conflicts or registry.dataset_conflicts:
        raise typer.Exit(1)


def _codec_lines(registry) -> list[str]:
    from harness.options import declared

    lines = ["codecs:"]
    for name, reg in sorted(registry.codecs.items()):
        spec = reg.spec
        points = (f"the CTC's {spec.family} points") if spec.rate_points is None else (
            ", ".join(f"{p:g}" for p in spec.rate_points) if isinstance(spec.rate_points, tuple) else "per task")
        missing = spec.missing()
        lines += [f"  {name} {spec.version}  family={spec.family or '-'} input={spec.input_kind} "
                  f"{spec.rate_parameter}: {points}", f"      {spec.description}",
                  f"      from {reg.source.describe()}; " + ("ready" if not missing else f"NOT READY: {missing}")]
        lines += [f"      -o {key}={option.default}  ({option.constraint()})" + (f" {option.help}" if option.help else "")
                  for key, option in declared(spec.options).items()]
    return lines


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
def preprocess(
    src: Annotated[Path, typer.Argument(help="Feature .npy")],
    dst: Annotated[Path, typer.Argument(help="Raw frame to write (.yuv)")],
    task: Annotated[str, typer.Option("--task", "-t")],
    family: Annotated[str, typer.Option(help="handcrafted (10-bit uint16 LE) or learned (float32 LE)")] = "handcrafted",
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
    family: Annotated[str, typer.Option(help="handcrafted or learned, as for preprocess")] = "handcrafted",
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
