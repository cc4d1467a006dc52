"""`harness` commands for submissions: pack a run, cross-check a bundle, build a leaderboard
(harness/bundle.py, crosscheck.py, leaderboard.py); registered on the app of harness.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from harness.cli_common import CtcOpt, DataRootOpt, DatasetOpt, _options, app


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
    reencode: Annotated[int, typer.Option(min=0, help="Also re-encode N seeded samples per task at every rate "
                                                      "point and compare the bitstreams (encoder determinism).")] = 0,
    accept: Annotated[Optional[list[str]], typer.Option(
        help="Accept a gap by name instead of failing: subset (records cover part of the sample lists or rate "
             "points), no-dataset, no-plugin.")] = None,
    checker: Annotated[str, typer.Option(help="Who checks (a lab or person), shown on the report and leaderboard.")] = "",
) -> None:
    """Check a bundle: hashes, plugin and models, fresh decodes, BPFP, re-scored metrics, BD-rates."""
    from harness.crosscheck import CrosscheckRequest, crosscheck as run_crosscheck

    def show(check) -> None:  # each check as it finishes: a long crosscheck shows where it is
        typer.echo(f"{check.verdict.upper():5} {check.name}: {check.summary} ({check.seconds:.1f} s)")
        for problem in check.problems[:5] if check.verdict != "pass" else ():
            if problem != check.summary:  # a one-problem check may say it in its summary already
                typer.echo(f"      {problem}")

    result = run_crosscheck(CrosscheckRequest(bundle, out, dataset, data_root, samples, seed, jobs, ctc, heads,
                                              weights, tuple(_options(option).items()), reencode,
                                              tuple(accept or ()), checker), on_check=show)
    typer.echo(f"verdict: {result.verdict}\nreport: {result.html_path}\njson: {result.json_path}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def leaderboard(
    bundles: Annotated[list[Path], typer.Argument(help="Bundles (directories or .tar) or folders of bundles.")],
    out: Annotated[Path, typer.Option(help="Site folder to write (index.html, leaderboard.json, figures).")],
    crosscheck: Annotated[Optional[list[Path]], typer.Option(
        "--crosscheck", help="Crosscheck report (crosscheck.json, its folder, or a folder of report folders), "
                             "repeatable; reports in BUNDLE.crosscheck*/ next to a bundle are always read.")] = None,
) -> None:
    """A static leaderboard site: one table per CTC, BD-rates, crosscheck verdicts by checker, curves."""
    from harness.leaderboard import build_site

    site = build_site(bundles, out, crosscheck or ())
    for reason in site.excluded:
        typer.echo(f"left out: {reason}", err=True)
    for reason in site.not_counted:
        typer.echo(f"report {reason}", err=True)
    typer.echo(f"site: {site.html}\ntable: {site.json}\npictures: {len(site.figures)}")
