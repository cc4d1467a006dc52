"""Checkpoint files in the official naming pattern, and finding the one for (task, λ).

hyperprior_lambda{λ}_epoch{E}_lr{lr}_bs{B}_patch{H}-{W}_checkpoint[_best].pth.tar,
looked up in <dir>/<task>/ and then <dir>/; λ is matched by float equality.
The last (non-_best) file is the default, as in the official evaluation.
"""

from __future__ import annotations

from pathlib import Path
import re

from harness import HarnessError

CHECKPOINT_RE = re.compile(
    r"^hyperprior_lambda(?P<lam>[-+0-9.eE]+)_epoch(?P<epochs>\d+)_lr(?P<lr>[-+0-9.eE]+)"
    r"_bs(?P<batch>\d+)_patch(?P<h>\d+)-(?P<w>\d+)_checkpoint(?P<best>_best)?\.pth\.tar$")
TRAIN_HINT = "harness train --codec hyperprior --task {task} --lambda {lam} --features DIR (or --dataset NAME)"


def checkpoint_name(lam: float, epochs: int, lr: float, batch: int, crop: tuple[int, int],
                    best: bool = False) -> str:
    """The official file name, e.g. hyperprior_lambda0.0017_epoch800_lr0.0001_bs128_patch256-256_checkpoint.pth.tar."""
    return (f"hyperprior_lambda{float(lam)}_epoch{int(epochs)}_lr{float(lr)}_bs{int(batch)}"
            f"_patch{int(crop[0])}-{int(crop[1])}_checkpoint{'_best' if best else ''}.pth.tar")


def checkpoints_in(folder: str | Path, lam: float, best: bool = False) -> list[Path]:
    """The checkpoint files for λ in `folder` (λ matched by float equality of the name's number), sorted."""
    hits = []
    for path in sorted(Path(folder).iterdir()):
        m = CHECKPOINT_RE.match(path.name)
        if m and bool(m["best"]) == best:
            try:
                if float(m["lam"]) == float(lam):
                    hits.append(path)
            except ValueError:
                continue
    return hits


def find_checkpoint(directory: str | Path, task: str, lam: float, best: bool = False) -> Path:
    """The checkpoint for λ in `<directory>/<task>/`, else `<directory>/`.

    λ is matched by float equality of the number in the file name. The last
    (non-_best) file is the default, as in the official evaluation.
    """
    directory = Path(directory)
    lam = float(lam)
    searched = [directory / task, directory]
    for folder in searched:
        if not folder.is_dir():
            continue
        hits = checkpoints_in(folder, lam, best)
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise HarnessError(f"several hyperprior checkpoints for task '{task}', λ={lam:g} in {folder}: "
                               + ", ".join(p.name for p in hits) + "; keep one or move the others away")
    pattern = f"hyperprior_lambda{lam}_epoch{{E}}_lr{{lr}}_bs{{B}}_patch{{H}}-{{W}}_checkpoint{'_best' if best else ''}.pth.tar"
    raise HarnessError(
        f"no hyperprior checkpoint for task '{task}', λ={lam:g}: expected a file named like {pattern} "
        f"in {searched[0]} or {searched[1]}. Train one with: {TRAIN_HINT.format(task=task, lam=f'{lam:g}')} "
        f"(or download the official pretrained models and put them there)")


