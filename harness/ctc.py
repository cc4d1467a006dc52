"""The common test conditions, loaded from TOML in ctc/ and validated.

A CTC is a directory of TOML files (`ctc.toml`, `tasks.toml`). The harness
reads nothing else for test-condition numbers: shapes, ranges, rate points and
metric directions all come from here, and the CTC's hash goes into every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import warnings
import json
from importlib import resources
from pathlib import Path
import tomllib
from typing import Any

import numpy as np

from harness.ctc_schema import CTC_FILE, check_keys, check_task_keys, check_tree
from harness.errors import CTCError, unknown_name

PACKINGS = ("dinov2", "llama3", "sd3")
LIST_FORMATS = ("name_label", "id", "nyu_pairs", "arc_jsonl", "name_caption")
DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Truncation:
    """[lo, hi] per layer (axis 1); one entry when the whole feature shares it."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    @property
    def per_layer(self) -> bool:
        return len(self.lo) > 1


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    model: str
    model_dir: str
    split_point: str
    shape: tuple[int, ...]
    dtype: str
    packing: str
    sample_lists: tuple[str, ...]
    sample_list_format: str
    metric: str
    metric_unit: str
    higher_is_better: bool
    truncation: dict[str, Truncation]
    lambdas: tuple[float, ...]
    training: dict[str, Any]  # the learned family's per-task table ([tasks.T] learned.*): λs and recipe
    source: str
    samples_paper: int = 0
    max_leading: int = 1
    max_tokens: int = 0
    qps: tuple[float, ...] = ()  # the task's own QPs, when the CTC's common ones do not suit it

    def check_shape(self, shape: tuple[int, ...]) -> str | None:
        """None when `shape` is a valid stored shape for this task, else why not."""
        if len(shape) != len(self.shape):
            return f"expected {len(self.shape)} axes {self.shape_text}, got {shape}"
        for axis, (want, got) in enumerate(zip(self.shape, shape)):
            if want == -1:
                limit = self.max_leading if axis == 0 else self.max_tokens
                if not 1 <= got <= limit:
                    return f"axis {axis} must be 1..{limit} in {self.shape_text}, got {shape}"
            elif want != got:
                return f"expected shape {self.shape_text}, got {shape}"
        return None

    @property
    def shape_text(self) -> str:
        return "(" + ", ".join("n" if s == -1 else str(s) for s in self.shape) + ")"

    def typical_shape(self) -> tuple[int, ...]:
        """A concrete shape: 2 crops for seg, 200 tokens for csr (demo and tests)."""
        fill = {0: 2, 2: 200}
        return tuple(fill[a] if s == -1 else s for a, s in enumerate(self.shape))


PAPER_ANCHORS = ("paper-vtm", "paper-hyperprior")
DEFAULT_MIN_OVERLAP = 0.10  # a CTC without a [bd] table (made before it existed)


@dataclass(frozen=True)
class CTC:
    name: str
    version: str
    title: str
    root: Path
    sha256: str
    bit_depth: int
    quant_rules: tuple[str, ...]
    default_quant_rule: str
    qps: tuple[float, ...]
    families: dict[str, dict[str, Any]]
    tasks: dict[str, TaskSpec]
    #: the anchors a run under these conditions is reported against (anchor names, see harness.curves)
    anchors: tuple[str, ...] = PAPER_ANCHORS
    #: bits per feature point of the uncoded features (float32), where the "orig" point sits on curves
    original_bpfp: float = 32.0
    #: [rate.<family>] parameter: what the family's rate points are ("qp", "lambda")
    rate_parameters: dict[str, str] = field(default_factory=dict)
    #: [families.<family>] aliases: earlier names of a family, accepted with a warning
    family_aliases: dict[str, str] = field(default_factory=dict)
    #: [bd] min_overlap: a BD-rate whose curves overlap less on the metric axis (common / union) is
    #: withheld (harness.comparison); reporting only, not part of family_fingerprint
    bd_min_overlap: float = DEFAULT_MIN_OVERLAP

    def family(self, name: str) -> str:
        """The family's name in this CTC: an alias (a name of an earlier CTC version) is mapped to it
        with a FutureWarning (shown to users, unlike DeprecationWarning); an unknown name is an error."""
        if name in self.families:
            return name
        if name in self.family_aliases:
            current = self.family_aliases[name]
            warnings.warn(f"codec family '{name}' is now '{current}' ({self.root / 'ctc.toml'} [families.{current}] "
                          f"aliases); declare family=\"{current}\": the old name goes with the next CTC version",
                          FutureWarning, stacklevel=3)
            return current
        raise CTCError(unknown_name("codec family", name, self.families))

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise CTCError(unknown_name("task", name, self.tasks))
        return self.tasks[name]

    def truncation(self, task: str, family: str) -> Truncation:
        """A family's truncation range for a task ("original": the data range the paper reports)."""
        return self.task(task).truncation[family if family == "original" else self.family(family)]

    def family_fingerprint(self, family: str | None) -> str:
        """sha256 (12 hex) of every condition a codec of `family` is coded and scored under: per task the
        shape, dtype, packing, sample lists, metric, truncation range, rate points and (learned families)
        training recipe, and the bit depth and quantization rule (family None: a codec of raw features,
        the tasks alone). An anchor of the family stays valid across CTC edits that keep it (a new
        anchor list, another family's training recipe)."""
        tasks = {}
        for name, task in sorted(self.tasks.items()):
            tasks[name] = {"shape": list(task.shape), "dtype": task.dtype, "packing": task.packing,
                           "sample_lists": list(task.sample_lists), "format": task.sample_list_format,
                           "metric": task.metric, "higher_is_better": task.higher_is_better,
                           "max_tokens": task.max_tokens, "max_leading": task.max_leading}
            if family is None:  # a codec of raw features: no truncation, its own rate points
                continue
            trunc = self.truncation(name, family)
            tasks[name]["truncation"] = [list(trunc.lo), list(trunc.hi)]
            tasks[name]["rate_points"] = list(self.rate_points(name, family))
            if self.rate_parameter(family) == "lambda":  # a learned family: its training recipe too
                tasks[name]["training"] = {k: v for k, v in task.training.items() if k != "source"}
        # the conditions, not the family's name: a renamed family keeps its fingerprint (and its anchors)
        conditions = {"input": self.families[self.family(family)]["input"] if family else None,
                      "bit_depth": self.bit_depth, "quant_rule": self.default_quant_rule, "tasks": tasks}
        return hashlib.sha256(json.dumps(conditions, sort_keys=True).encode()).hexdigest()[:12]

    def rate_parameter(self, family: str) -> str:
        """What a family's rate points are: its [rate.<family>] parameter ("qp", "lambda")."""
        family = self.family(family)
        if family not in self.rate_parameters:
            raise CTCError(f"{self.root / 'ctc.toml'}: no [rate.{family}] table: the family has no rate points")
        return self.rate_parameters[family]

    def rate_points(self, task: str, family: str) -> tuple[float, ...]:
        """The CTC's rate points of a family for a task (QPs or λs), the highest rate first.

        A larger λ weighs distortion more, so λs run from the largest down (the CTC
        lists them ascending); QPs are listed lowest (highest rate) first.
        """
        if self.rate_parameter(family) == "lambda":  # each task's own, in its learned table
            return tuple(sorted(self.task(task).lambdas, reverse=True))
        return self.task(task).qps or self.qps


def _require(table: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in table:
        raise CTCError(f"{where}: missing key '{key}'")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CTCError(f"{where}: key '{key}' must be {kind}, got {value!r}")
    return value


def _range_pairs(value: Any, where: str, layers: int) -> Truncation:
    """Parse [lo, hi] or [[lo, hi], ...] (one pair per layer)."""
    pairs = value if value and isinstance(value[0], list) else [value]
    if len(pairs) not in (1, layers):
        raise CTCError(f"{where}: needs 1 or {layers} [lo, hi] pairs, got {len(pairs)}")
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair):
            raise CTCError(f"{where}: a range must be [lo, hi] numbers, got {pair!r}")
        if not pair[0] < pair[1]:
            raise CTCError(f"{where}: range {pair!r} must have lo < hi")
    return Truncation(tuple(float(p[0]) for p in pairs), tuple(float(p[1]) for p in pairs))


def _check_training(hyper: dict, where: str) -> None:
    """Each key of the right kind (unknown keys are refused by harness.ctc_schema, with the closest one)."""
    if "warm_start" in hyper and not isinstance(hyper["warm_start"], bool):
        raise CTCError(f"{where}: 'warm_start' must be true or false, got {hyper['warm_start']!r}")
    for key in ("batch", "epochs", "steps_per_epoch", "training_samples", "warm_start_epochs"):
        if key in hyper and (not isinstance(hyper[key], int) or isinstance(hyper[key], bool) or hyper[key] < 1):
            raise CTCError(f"{where}: '{key}' must be a positive integer, got {hyper[key]!r}")
    for key in ("lr", "input_gain"):
        if key in hyper and (not isinstance(hyper[key], (int, float)) or isinstance(hyper[key], bool)
                             or not hyper[key] > 0):
            raise CTCError(f"{where}: '{key}' must be a positive number, got {hyper[key]!r}")
    if "input_center" in hyper and (not isinstance(hyper["input_center"], (int, float))
                                    or isinstance(hyper["input_center"], bool)):
        raise CTCError(f"{where}: 'input_center' must be a number, got {hyper['input_center']!r}")
    if "input_norm" in hyper and hyper["input_norm"] not in ("scalar", "column"):
        raise CTCError(f"{where}: 'input_norm' must be \"scalar\" or \"column\", got {hyper['input_norm']!r}")
    for key in ("crop", "network"):
        value = hyper.get(key, [1, 1])
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise CTCError(f"{where}: '{key}' must be two positive integers, got {value!r}")


def _parse_task(name: str, t: dict, file: str, families: list[str]) -> TaskSpec:
    where = f"{file} [tasks.{name}]"
    check_task_keys(t, families, where)
    shape = tuple(_require(t, "shape", where, list))
    if len(shape) != 4 or not all(isinstance(s, int) and (s > 0 or s == -1) for s in shape):
        raise CTCError(f"{where}: 'shape' must be 4 positive ints (-1 = varies), got {shape}")
    dtype = _require(t, "dtype", where, str)
    if dtype not in DTYPES:
        raise CTCError(f"{where}: 'dtype' must be one of {DTYPES}, got {dtype!r}")
    packing = _require(t, "packing", where, str)
    if packing not in PACKINGS:
        raise CTCError(f"{where}: 'packing' must be one of {PACKINGS}, got {packing!r}")
    fmt = _require(t, "sample_list_format", where, str)
    if fmt not in LIST_FORMATS:
        raise CTCError(f"{where}: 'sample_list_format' must be one of {LIST_FORMATS}, got {fmt!r}")
    trunc = _require(t, "truncation", where, dict)
    for fam in [*families, "original"]:
        _require(trunc, fam, f"{where}.truncation", list)
    # every codec family's range, plus "original": the data range the paper reports (Table 4)
    ranges = {name: _range_pairs(value, f"{where}.truncation.{name}", shape[1])
              for name, value in trunc.items() if name != "source"}
    learned = _require(t, "learned", where, dict)
    lambdas = tuple(float(v) for v in _require(learned, "lambdas", f"{where}.learned", list))
    if len(lambdas) == 0 or any(v <= 0 for v in lambdas):
        raise CTCError(f"{where}.learned: 'lambdas' must be positive numbers")
    _check_training(learned, f"{where}.learned")
    return TaskSpec(
        name=name,
        title=_require(t, "title", where, str),
        model=_require(t, "model", where, str),
        model_dir=_require(t, "model_dir", where, str),
        split_point=_require(t, "split_point", where, str),
        shape=shape,
        dtype=dtype,
        packing=packing,
        sample_lists=tuple(_require(t, "sample_lists", where, list)),
        sample_list_format=fmt,
        metric=_require(t, "metric", where, str),
        metric_unit=t.get("metric_unit", ""),
        higher_is_better=_require(t, "higher_is_better", where, bool),
        truncation=ranges,
        lambdas=lambdas,
        training=dict(learned),
        source=_require(t, "source", where, str),
        samples_paper=int(t.get("samples_paper", 0)),
        max_leading=int(t.get("max_leading", 1 if shape[0] != -1 else 3)),
        max_tokens=int(t.get("max_tokens", 0)),
        qps=tuple(float(q) for q in t.get("qps", ())),
    )


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CTCError(f"{path}: CTC file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CTCError(f"{path}: invalid TOML: {exc}") from None


def hash_directory(root: Path) -> str:
    """sha256 over the names and bytes of every .toml file, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.toml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def builtin_ctc_names() -> list[str]:
    """Names of the CTCs shipped with the harness (the folders of ctc/)."""
    base = Path(str(resources.files("harness_ctc")))
    return sorted(p.name for p in base.iterdir() if (p / "ctc.toml").is_file())


def builtin_ctc_dir(name: str = "paper") -> Path:
    """The directory of a CTC shipped with the harness (ctc/<name>)."""
    path = Path(str(resources.files("harness_ctc"))) / name
    if not (path / "ctc.toml").is_file():
        raise CTCError(unknown_name("CTC", name, builtin_ctc_names()))
    return path


def load_ctc(root: str | Path | None = None) -> CTC:
    """Load and validate a CTC: a directory, the name of a shipped one ("paper", "mini"), default "paper"."""
    if root is None:
        root = builtin_ctc_dir("paper")
    elif not Path(root).exists() and str(root) in builtin_ctc_names():
        root = builtin_ctc_dir(str(root))
    root = Path(root)
    meta_file, tasks_file = root / "ctc.toml", root / "tasks.toml"
    meta, tasks = _read_toml(meta_file), _read_toml(tasks_file)
    check_tree(meta, CTC_FILE, str(meta_file))
    check_keys(tasks, {"tasks"}, str(tasks_file))
    info = _require(meta, "ctc", str(meta_file), dict)
    quant = _require(meta, "quantization", str(meta_file), dict)
    rules = tuple(_require(quant, "rules", f"{meta_file} [quantization]", list))
    default_rule = _require(quant, "default_rule", f"{meta_file} [quantization]", str)
    if default_rule not in rules:
        raise CTCError(f"{meta_file} [quantization]: default_rule {default_rule!r} not in rules {rules}")
    families = _require(meta, "families", str(meta_file), dict)
    rate = _require(meta, "rate", str(meta_file), dict)
    aliases = _family_aliases(families, meta_file)
    # the common points of the families that have them (QPs); a family without takes each task's λs
    common = [(f, t["points"]) for f, t in rate.items() if isinstance(t, dict) and "points" in t]
    if len(common) != 1:
        raise CTCError(f"{meta_file}: exactly one [rate.<family>] table must list 'points' (the common QPs), "
                       f"found {len(common)}")
    qps = tuple(float(q) for q in _require(rate[common[0][0]], "points", f"{meta_file} [rate.{common[0][0]}]", list))
    for family in rate:
        if family not in families:
            raise CTCError(f"{meta_file} [rate.{family}]: {unknown_name('codec family', family, families)}")
    task_tables = _require(tasks, "tasks", str(tasks_file), dict)
    anchor_table = meta.get("anchors", {"names": list(PAPER_ANCHORS)})
    anchors = tuple(_require(anchor_table, "names", f"{meta_file} [anchors]", list))
    bpfp = _require(meta, "bpfp", str(meta_file), dict)
    original_bpfp = _require(bpfp, "original_bpfp", f"{meta_file} [bpfp]", (int, float))
    bd = meta.get("bd", {})
    min_overlap = bd.get("min_overlap", DEFAULT_MIN_OVERLAP)
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, float)) or not 0 <= min_overlap <= 1:
        raise CTCError(f"{meta_file} [bd]: 'min_overlap' must be a number from 0 to 1, got {min_overlap!r}")
    specs = {name: _parse_task(name, t, str(tasks_file), list(families)) for name, t in task_tables.items()}
    return CTC(
        name=_require(info, "name", f"{meta_file} [ctc]", str),
        version=_require(info, "version", f"{meta_file} [ctc]", str),
        title=info.get("title", ""),
        root=root,
        sha256=hash_directory(root),
        bit_depth=int(_require(quant, "bit_depth", f"{meta_file} [quantization]", int)),
        quant_rules=rules,
        default_quant_rule=default_rule,
        qps=qps,
        families={k: dict(v) for k, v in families.items()},
        tasks=specs,
        anchors=anchors,
        original_bpfp=float(original_bpfp),
        rate_parameters={family: _require(table, "parameter", f"{meta_file} [rate.{family}]", str)
                         for family, table in rate.items()},
        family_aliases=aliases,
        bd_min_overlap=float(min_overlap),
    )


def _family_aliases(families: dict, meta_file: Path) -> dict[str, str]:
    """old name -> family, from each [families.<name>] aliases list; an alias may not be a family."""
    aliases: dict[str, str] = {}
    for family, table in families.items():
        names = table.get("aliases", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CTCError(f"{meta_file} [families.{family}]: 'aliases' must be a list of names, got {names!r}")
        for name in names:
            if name in families or name in aliases:
                raise CTCError(f"{meta_file} [families.{family}]: alias '{name}' is already a family or an alias")
            aliases[name] = family
    return aliases


def layer_bounds(trunc: Truncation, ndim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """lo, hi as float64 arrays broadcastable over (N, C, H, W) along axis 1."""
    shape = (1, len(trunc.lo)) + (1,) * (ndim - 2)
    return np.array(trunc.lo).reshape(shape), np.array(trunc.hi).reshape(shape)


def ctc_of_run(meta: dict[str, Any], where: Path, override: str | Path | None = None) -> CTC:
    """The CTC a run was coded under: `override` if given (it must match), else the shipped CTC
    with the run's hash, else the directory recorded in run.json if it still has that hash."""
    recorded = meta.get("ctc", {})
    want = recorded.get("sha256")
    if override is not None:
        ctc = load_ctc(override)
        if want and ctc.sha256 != want:
            raise CTCError(f"{where}: coded under CTC '{recorded.get('name')}' ({want[:12]}), "
                           f"not under {ctc.root} ({ctc.sha256[:12]})")
        return ctc
    candidates = [builtin_ctc_dir(n) for n in builtin_ctc_names()]
    if recorded.get("root"):
        candidates.append(Path(recorded["root"]))
    for root in candidates:
        if root.is_dir() and (not want or hash_directory(root) == want):
            return load_ctc(root)
    raise CTCError(f"{where}: coded under CTC '{recorded.get('name')}' ({str(want)[:12]}), which is neither "
                   "shipped with this harness nor at its recorded place; give it with --ctc DIR")


def ctc_with_task(task: str, override: str | Path | None = None) -> CTC:
    """--ctc when given, else the first shipped CTC defining `task` (the paper's first)."""
    if override is not None:
        return load_ctc(override)
    names = sorted(builtin_ctc_names(), key=lambda n: n != "paper")
    for name in names:
        ctc = load_ctc(builtin_ctc_dir(name))
        if task in ctc.tasks:
            return ctc
    return load_ctc()  # its task() names the known tasks


def checker_ctc(sha256: str, where: Path, override: str | Path | None = None) -> CTC:
    """The checker's own CTC whose sha256 a bundle names: `override` (--ctc) or one shipped with this
    harness. Never a folder the bundle names, never a guess for an empty hash."""
    if len(sha256) != 64:
        raise CTCError(f"{where}: field 'ctc.sha256' is {sha256[:70]!r}, not a sha256")
    if override is not None:  # a shipped CTC's name or a folder of the checker's
        ctc = load_ctc(override)
        if ctc.sha256 == sha256:
            return ctc
    else:
        for name in builtin_ctc_names():
            if hash_directory(builtin_ctc_dir(name)) == sha256:
                return load_ctc(builtin_ctc_dir(name))
    shipped = ", ".join(builtin_ctc_names())
    raise CTCError(f"{where}: coded under CTC {sha256[:12]}, which is not "
                   + (f"the --ctc given ({override})" if override is not None else f"one shipped here ({shipped})")
                   + "; a crosscheck uses only the checker's own test conditions: give them with --ctc DIR")
