"""What every `harness` command module shares: the typer app, common options and small parsers."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Annotated, Optional

import typer

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
    from harness.api import run_ctc

    return run_ctc(run_dir, ctc)


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
