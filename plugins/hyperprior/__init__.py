"""The `hyperprior` anchor: the CTC's learned codec on CompressAI (paper §6.1.2, supplement §1.2).

A 1-channel ScaleHyperprior (N=128, M=192) per (task, λ) codes the packed
frame of the hyperprior family (truncated, normalized to [0, 1]; input kind
"frame01"). Checkpoints come from a directory the user gives (codec option
`checkpoints` or $FCM_HYPERPRIOR_CHECKPOINTS): the authors' published ones, or
ones made with `harness train --codec hyperprior`.

torch and CompressAI are imported only when the codec is used, so listing
plugins stays fast. Determinism: CPU encode gives the same bytes every time;
decoding reproduces the encoder's reconstruction bit for bit at the same torch
thread count (option `threads`, default 1, as the official evaluation). Across
thread counts or CPU/GPU the entropy-decoded latents agree but the synthesis
convolutions may differ in the last float bits, and a GPU's hyper-decoder may
even pick other entropy tables: decode where you encode.
"""

from __future__ import annotations

from collections.abc import Mapping
import importlib.util
import os
from pathlib import Path

from harness import CodecError, CodecSpec, Option, hookimpl, truthy

VERSION = "1.0"
CHECKPOINTS_ENV = "FCM_HYPERPRIOR_CHECKPOINTS"
OPTIONS = {"checkpoints": Option("", "path", help=f"the checkpoints folder (default ${CHECKPOINTS_ENV})"),
           "device": Option("cpu", help="torch device", local=True),
           "threads": Option("1", "int", minimum=0, help="torch threads (0: torch's own setting)", local=True),
           "best": Option("0", "bool", help="the best checkpoint instead of the last"),
           "model_task": Option("", help="code with another task's models (generalization study)"),
           "pad": Option("zero", choices=("zero", "edge"), help="what the encoder puts in the padding")}


def availability() -> str | None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("compressai") is None:
        return "torch and CompressAI are needed: pip install 'fcm-harness[learned]'"
    return None


def make_codec(options: Mapping[str, str]):
    # names, kinds and choices are checked by the harness against OPTIONS (CodecSpec.open)
    checkpoints = options.get("checkpoints") or os.environ.get(CHECKPOINTS_ENV)
    if not checkpoints or not Path(checkpoints).is_dir():
        where = f"'{checkpoints}' is not a directory" if checkpoints else "no checkpoint directory given"
        raise CodecError(f"hyperprior: {where}; give -o checkpoints=DIR or set ${CHECKPOINTS_ENV} to a folder "
                         "holding <task>/hyperprior_lambda{λ}_epoch{E}_lr{lr}_bs{B}_patch{H}-{W}_checkpoint.pth.tar "
                         "(the authors' published checkpoints, or make them with: harness train --codec hyperprior "
                         "--task T --features DIR, or --dataset mini for the mini tasks)")
    from harness_plugins.hyperprior.codec import HyperpriorCodec

    threads = int(options.get("threads", "1") or 0) or None  # 0: leave torch's setting
    return HyperpriorCodec(checkpoints, device=options.get("device", "cpu"), threads=threads,
                           best=_wants_best(options),
                           model_task=options.get("model_task") or None, pad=options.get("pad") or "zero")


def model_files(options: Mapping[str, str], task: str, rate_point: float) -> list[Path]:
    """The checkpoint a job is coded with (its hash goes into the run's key)."""
    from harness_plugins.hyperprior.checkpoints import find_checkpoint

    checkpoints = options.get("checkpoints") or os.environ.get(CHECKPOINTS_ENV, "")
    return [find_checkpoint(checkpoints, options.get("model_task") or task, rate_point, _wants_best(options))]


def _wants_best(options: Mapping[str, str]) -> bool:
    return truthy(options.get("best", "0"))


#: the training settings the trainer reads (harness train gives the CTC's and -o KEY=VALUE ones)
TRAIN_SETTINGS = ("crop", "batch", "epochs", "steps_per_epoch", "lr", "val_split", "device", "network",
                  "input_gain", "input_center", "input_norm", "seed", "warm_start", "warm_start_epochs", "lambdas")
# what the harness passes along for the record (training_settings); read by nothing here
HARNESS_SETTINGS = ("source", "packing", "pad_multiple")


def _int_pair(value, key: str) -> tuple[int, int]:
    """[a, b] from the CTC, or "a,b" / "axb" from -o KEY=VALUE."""
    if isinstance(value, str):
        value = value.lower().replace("x", ",").split(",")
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise CodecError(f"hyperprior: training setting '{key}' must be two integers, got {value!r}") from None
    if len(pair) != 2 or min(pair) < 1:
        raise CodecError(f"hyperprior: training setting '{key}' must be two positive integers, got {value!r}")
    return pair


def train(frames, rate_point: float, out_dir: Path, settings: Mapping, log) -> dict:
    """The codec's trainer (called by `harness train`): one model for one λ.

    Settings (CTC `hyperprior.*` keys, `harness train` options, -o KEY=VALUE): crop, batch, epochs,
    steps_per_epoch, lr, val_split, device, network (N,M; default 128,192), input_gain and input_center
    (the network sees (x - center) * gain; default 1 and 0, CompressAI's model), input_norm ("column": a
    centre and gain per frame column instead), warm_start and warm_start_epochs with the task's lambdas
    (each λ but the lowest starts from the next lower λ's checkpoint in out_dir), seed. Others are an error.
    """
    from harness_plugins.hyperprior.training import INPUT_NORMS, train as train_model

    unknown = sorted(set(settings) - set(TRAIN_SETTINGS) - set(HARNESS_SETTINGS))
    if unknown:
        raise CodecError(f"hyperprior: unknown training setting(s) {', '.join(unknown)}; available: "
                         + ", ".join(TRAIN_SETTINGS))
    norm = str(settings.get("input_norm", "scalar"))
    if norm not in INPUT_NORMS:
        raise CodecError(f"hyperprior: training setting 'input_norm' must be one of {', '.join(INPUT_NORMS)}, "
                         f"got {norm!r}")
    steps = settings.get("steps_per_epoch")
    network = _int_pair(settings.get("network", (128, 192)), "network")
    epochs, parent = int(settings["epochs"]), None
    if truthy(str(settings.get("warm_start", False))):
        parent = _warm_start_parent(out_dir, rate_point, settings.get("lambdas") or ())
        if parent is not None:
            epochs = int(settings.get("warm_start_epochs", epochs))
    result = train_model(frames, rate_point, out_dir, crop=_int_pair(settings["crop"], "crop"),
                         batch=int(settings["batch"]), epochs=epochs, init_from=parent,
                         steps_per_epoch=int(steps) if steps is not None else None,
                         lr=float(settings.get("lr", 1e-4)), val_split=float(settings.get("val_split", 0.1)),
                         seed=int(settings.get("seed", 0)), network=network,
                         input_norm=(float(settings.get("input_gain", 1.0)), float(settings.get("input_center", 0.0))),
                         column_norm=norm == "column", device=settings.get("device"), log=log)
    return {"checkpoint": result.last, "best": result.best, "history": result.history,
            "initialized_from": parent.name if parent else None}


def _warm_start_parent(out_dir: Path, lam: float, lambdas) -> Path | None:
    """The checkpoint of the next lower λ in `out_dir` (None for the lowest λ, which trains from scratch).

    Warm start is a recipe: the models of one task are trained from the lowest λ up, each starting from
    the previous one's weights. Every model then has had at least as much training as every lower-rate
    one, so quality cannot fall as the rate rises for want of training (trained from the highest λ
    down, the later, lower-λ models beat the undertrained first one: mini lm gave 70 % at 8.8 BPFP for
    λ 0.03 and 85 % at 8.8 BPFP for λ 0.01). A λ without its parent is an error, not a silent fresh start.
    """
    from harness_plugins.hyperprior.checkpoints import checkpoints_in

    if not any(abs(float(v) - float(lam)) <= 1e-12 * max(1.0, abs(float(lam))) for v in lambdas):
        raise CodecError(f"hyperprior: warm start needs λ={lam:g} among the task's λs "
                         f"({', '.join(f'{float(v):g}' for v in lambdas) or 'none given'}); "
                         "-o warm_start=0 trains it from scratch")
    lower = sorted(float(v) for v in lambdas if float(v) < float(lam))
    if not lower:
        return None
    want = lower[-1]
    found = checkpoints_in(out_dir, want) if Path(out_dir).is_dir() else []
    if len(found) != 1:
        what = "no checkpoint" if not found else f"{len(found)} checkpoints"
        raise CodecError(f"hyperprior: warm start of λ={lam:g} needs the λ={want:g} model, trained first; "
                         f"{what} for it in {out_dir} (train the task's λs from the lowest up: "
                         f"harness train ... --lambda all)")
    return found[0]


@hookimpl
def harness_codecs() -> list[CodecSpec]:
    return [CodecSpec(
        name="hyperprior", version=VERSION, family="learned", input_kind="frame01", factory=make_codec,
        rate_parameter="lambda", rate_points=None, options=OPTIONS, availability=availability, trainer=train,
        model_files=model_files,
        description="CompressAI ScaleHyperprior (1 channel; N=128, M=192 unless the CTC's network says), "
                    "one checkpoint per task and λ",
    )]
