"""Feature statistics of the paper's supplement §3 (prototype), streamed over a dataset.

What it computes, per task (per layer for dpt, whose CTC ranges are per layer):

- value statistics: max, min, mean, std (population), excess kurtosis, streamed
  with exact pairwise merging of central moments (Chan/Pébay), in float64;
- redundancy on 10-bit codes (supplement §3.2, Table 3 "IV" and "GM"):
    IV = population variance (ddof=0) of the 10-bit codes q in [0, 1023];
    GM = mean over pixels of sqrt(gx² + gy²), with gx, gy the unnormalised 3x3
         Sobel responses (scipy.ndimage.sobel, kernel [1,2,1] ⊗ [-1,0,1], i.e.
         cv2.Sobel ksize=3), evaluated only where the whole 3x3 neighbourhood
         lies inside the 2-D plane (the 1-pixel border is dropped, no padding).
  Planes are the (H, W) planes of the (N, C, H, W) feature: token x channel for
  DINOv2/Llama (one tile of the packed frame, so packing seams never count),
  one latent channel for SD3. Codes use the CTC "floor" quantiser of the
  harness with two ranges: the task's *original* range (what Table 3's values
  are consistent with) and the *vtm* truncation range (the codec's input);
- value histograms with fixed edges (original range per task/layer, plus a
  zoom window around the truncation range) for original, truncated (vtm range)
  and optionally reconstructed features, with CDFs; PNG plots;
- 16x16 blocks and their orthonormal 2-D DCT-II magnitudes; mean |DCT| and
  energy compaction (DC and low-frequency energy fraction) over all blocks;
- outlier channels (largest max |x|) and adjacent-token correlation.

Everything is streamed: one feature is in memory at a time and large planes are
processed in row chunks, so a dataset of 79 MB dpt features is fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import csv
from dataclasses import dataclass, field
import io
import math
from pathlib import Path
import time
from typing import Any

import numpy as np

from harness.analysis.channels import ChannelStats, TokenCorr
from harness.analysis.common import _planes, original_range, task_range
from harness.analysis.dct import block_dct_sums, dct_blocks, energy_compaction, plot_dct_blocks, plot_mean_dct
from harness.analysis.histograms import HistogramSet, histogram_edges, plot_value_histograms
from harness.analysis.stats import Moments, QuantStats, _slice, quantize_plane
from harness.ctc import CTC, Truncation
from harness.npyio import atomic_write_text


Reconstructor = Callable[[str, str, np.ndarray], "np.ndarray | None"]


def codec_reconstructor(ctc: CTC, codec_name: str, rate_point: float, options: dict | None = None,
                        registry: Any = None, rule: str | None = None) -> Reconstructor:
    """reconstruct(task, sample_id, feature) through a harness codec plugin at one rate point:
    CTC pre-processing of the codec's family -> encode -> decode -> inverse pre-processing."""
    from harness.processing import Preprocessor
    from harness.registry import default_registry

    spec = (registry or default_registry()).codec(codec_name).spec
    codec = spec.open(options)

    def reconstruct(task: str, sample_id: str, feature: np.ndarray) -> np.ndarray:
        if spec.input_kind == "feature":
            return codec.decode(codec.encode(feature, rate_point, task))
        pre = Preprocessor.for_task(ctc, task, spec.family, spec.input_kind, feature.shape, feature.dtype, rule)
        return pre.inverse(codec.decode(codec.encode(pre.forward(feature), rate_point, task)))

    reconstruct.label = f"{codec_name} @ {spec.rate_parameter}{rate_point:g}"  # type: ignore[attr-defined]
    return reconstruct



QUANT_RANGES = ("original", "handcrafted")

#: Supplement Table 3 (10 random samples per task): max, min, mean, IV, GM ("GM scaled by 1e5"
#: in the caption; how is not said, so GM is not comparable in absolute terms).
PAPER_TABLE3 = {
    ("cls", "all"): (79.01, -502.04, 0.0782, 17.04, 3.97),
    ("seg", "all"): (94.88, -485.23, 0.0780, 13.30, 4.30),
    ("dpt", "L1"): (3.25, -2.33, -0.0015, 128.91, 17.92),
    ("dpt", "L2"): (4.99, -26.08, -0.0005, 36.96, 10.00),
    ("dpt", "L3"): (23.51, -314.26, 0.0042, 9.61, 2.76),
    ("dpt", "L4"): (96.04, -493.17, 0.0731, 12.54, 4.35),
    ("csr", "all"): (27.50, -26.38, 0.0038, 419.14, 33.28),
    ("tti", "all"): (3.67, -2.11, 0.5664, 21130.12, 138.53),
}


@dataclass
class TaskAnalysis:
    task: str
    layers: int
    layer_axis: int | None
    channel_axis: int
    skip_first: int
    hist: HistogramSet
    moments: list[Moments] = field(default_factory=list)
    quant: dict[str, list[QuantStats]] = field(default_factory=dict)
    dct_sums: list[dict[str, Any]] = field(default_factory=list)
    dct_example: list[dict[str, Any]] = field(default_factory=list)
    channels: list[ChannelStats] = field(default_factory=list)
    tokens: list[TokenCorr] = field(default_factory=list)
    samples: int = 0
    per_sample: list[dict[str, Any]] = field(default_factory=list)


def _task_layout(ctc: CTC, task: str) -> tuple[int, int | None, int, int]:
    """(layers, layer_axis, channel_axis, skip_first) of a task."""
    spec = ctc.task(task)
    per_layer = original_range(ctc, task).per_layer or ctc.truncation(task, "handcrafted").per_layer
    layers = spec.shape[1] if per_layer else 1
    channel_axis = 1 if spec.packing == "sd3" else -1
    skip = 1 if spec.packing in ("dinov2", "llama3") else 0  # cls token / BOS token
    return layers, (1 if per_layer else None), channel_axis, skip


def _layer_ranges(trunc: Truncation, layer: int) -> tuple[float, float]:
    i = min(layer, len(trunc.lo) - 1)
    return trunc.lo[i], trunc.hi[i]


def _analyse_feature(ta: TaskAnalysis, ctc: CTC, sample_id: str, feature: np.ndarray,
                     recon: np.ndarray | None, seed: int) -> None:
    ta.hist.add_feature(feature, ta.layer_axis, recon)
    for layer in range(ta.layers):
        part = feature if ta.layers == 1 else _slice(feature, ta.layer_axis, layer)
        m = Moments().update(part)
        ta.moments[layer].merge(m)
        name = f"L{layer + 1}" if ta.layers > 1 else "all"
        row = {"task": ta.task, "sample": sample_id, "layer": name, **m.result()}
        for name in QUANT_RANGES:
            lo, hi = _layer_ranges(task_range(ctc, ta.task, name), layer)
            qs = QuantStats()
            for plane in _planes(part):
                qs.add(quantize_plane(plane, lo, hi, ctc.bit_depth, ctc.default_quant_rule))
            ta.quant[name][layer].merge(qs)
            r = qs.result()
            row[f"iv_{name}"], row[f"gm_{name}"] = r["iv"], r["gm"]
        ta.per_sample.append(row)
        for i, plane in enumerate(_planes(part)):
            sums = block_dct_sums(plane)
            acc = ta.dct_sums[layer]
            acc["sum_abs"] += sums["sum_abs"]
            acc["sum_sq"] += sums["sum_sq"]
            acc["blocks"] += sums["blocks"]
            if not ta.dct_example[layer] and i == 0:
                ta.dct_example[layer] = dct_blocks(plane, 16, 4, seed + layer)
        ta.channels[layer].add(part)
        ta.tokens[layer].add(part)


def analyze_dataset(dataset: Any, tasks: Iterable[str], out_dir: str | Path,
                    progress: Callable[[str, int, int], None] | None = None,
                    reconstruct: Reconstructor | None = None, limit: int | None = None,
                    bins: int = 400, seed: int = 0, top: int = 5) -> dict[str, Any]:
    """Analyse `tasks` of a harness `Dataset` into `out_dir`: stats.csv, samples.csv,
    outliers.csv, <task>_hist.png, <task>_dct_blocks.png, <task>_dct_mean.png, index.html.

    One feature is loaded at a time. `reconstruct(task, sample_id, feature)` may
    return a reconstructed feature to add to the histograms ("reconstructed").
    `progress(task, done, total)` is called after each sample. Returns a summary dict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctc: CTC = dataset.ctc
    started = time.perf_counter()
    summary: dict[str, Any] = {"out_dir": str(out), "tasks": {}, "stats_rows": [], "outlier_rows": []}
    sample_rows: list[dict[str, Any]] = []
    for task in tasks:
        t0 = time.perf_counter()
        layers, layer_axis, channel_axis, skip = _task_layout(ctc, task)
        ta = TaskAnalysis(task, layers, layer_axis, channel_axis, skip,
                          HistogramSet(histogram_edges(ctc, task, bins)))
        ta.moments = [Moments() for _ in range(layers)]
        ta.quant = {name: [QuantStats() for _ in range(layers)] for name in QUANT_RANGES}
        ta.dct_sums = [{"sum_abs": np.zeros((16, 16)), "sum_sq": np.zeros((16, 16)), "blocks": 0}
                       for _ in range(layers)]
        ta.dct_example = [{} for _ in range(layers)]
        ta.channels = [ChannelStats(channel_axis) for _ in range(layers)]
        ta.tokens = [TokenCorr(skip) for _ in range(layers)]
        samples = dataset.samples(task, limit=limit)
        for done, sample in enumerate(samples, 1):
            feature = dataset.load(sample)
            recon = reconstruct(task, sample.id, feature) if reconstruct else None
            _analyse_feature(ta, ctc, sample.id, feature, recon, seed)
            del feature, recon
            ta.samples += 1
            if progress:
                progress(task, done, len(samples))
        sample_rows += ta.per_sample
        summary["tasks"][task] = _finish_task(ta, ctc, out, summary, top)
        summary["tasks"][task]["seconds"] = time.perf_counter() - t0
    _write_csv(out / "stats.csv", summary["stats_rows"])
    _write_csv(out / "samples.csv", sample_rows)
    _write_csv(out / "outliers.csv", summary["outlier_rows"])
    summary["seconds"] = time.perf_counter() - started
    summary["reconstruction"] = getattr(reconstruct, "label", "custom") if reconstruct else None
    summary["html"] = str(write_html(summary, out, getattr(dataset, "name", "dataset")))
    return summary


def _finish_task(ta: TaskAnalysis, ctc: CTC, out: Path, summary: dict[str, Any], top: int) -> dict[str, Any]:
    task = ta.task
    names = [f"L{i + 1}" for i in range(ta.layers)] if ta.layers > 1 else ["all"]
    rows = []
    for layer in range(ta.layers):
        stats = ta.moments[layer].result()
        row: dict[str, Any] = {"task": task, "layer": names[layer], "samples": ta.samples, **stats}
        for name in QUANT_RANGES:
            q = ta.quant[name][layer].result()
            row[f"iv_{name}"], row[f"gm_{name}"] = q["iv"], q["gm"]
        acc = ta.dct_sums[layer]
        comp = energy_compaction(acc["sum_sq"])
        row["dct_dc_energy"], row["dct_low4_energy"] = comp["dc_energy"], comp["low_energy"]
        row.update({f"tok_{k}": v for k, v in ta.tokens[layer].result().items() if k != "pairs"})
        row["below_original_range"], row["above_original_range"] = ta.hist.outside(layer)
        paper = PAPER_TABLE3.get((task, names[layer]), (math.nan,) * 5)
        row.update(zip(("paper_max", "paper_min", "paper_mean", "paper_iv", "paper_gm"), paper))
        rows.append(row)
        for rank, ch in enumerate(ta.channels[layer].result(top)["channels"], 1):
            summary["outlier_rows"].append({"task": task, "layer": names[layer], "rank": rank, **ch})
    summary["stats_rows"] += rows
    spec = ctc.task(task)
    title = f"{task}: {spec.title} ({ta.samples} samples)"
    figures = [
        ("value distribution: original vs truncated (vtm range)"
         + (" vs reconstructed" if "reconstructed" in ta.hist.series() else ""),
         plot_value_histograms(ta.hist, out / f"{task}_hist.png", title, names if ta.layers > 1 else None)),
        ("16x16 blocks and |DCT| (first sample, first plane)",
         plot_dct_blocks([(n, ta.dct_example[i]) for i, n in enumerate(names)], out / f"{task}_dct_blocks.png",
                         f"{task}: 16x16 feature blocks and log10 |DCT-II|")),
        ("mean |DCT| over all 16x16 blocks (energy compaction)",
         plot_mean_dct([(n, ta.dct_sums[i]["sum_abs"] / max(ta.dct_sums[i]["blocks"], 1),
                         energy_compaction(ta.dct_sums[i]["sum_sq"])) for i, n in enumerate(names)],
                       out / f"{task}_dct_mean.png", f"{task}: log10 mean |DCT| over all blocks")),
    ]
    return {"rows": rows, "figures": [{"caption": c, "file": p.name} for c, p in figures],
            "title": spec.title, "samples": ta.samples}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    text = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, text.getvalue())


HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Feature analysis: {{ dataset }}</title>
<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}img{max-width:100%;border:1px solid #ddd}
.note{color:#555;font-size:13px}</style></head><body>
<h1>Feature analysis: {{ dataset }}</h1>
<p class="note">Supplement §3 statistics. IV = population variance of 10-bit codes; GM = mean over interior pixels
of sqrt(gx²+gy²), 3x3 Sobel ([1,2,1]⊗[-1,0,1], unnormalised), per (H, W) plane, codes from the CTC floor quantiser
with the task's original range (<code>_original</code>) or its handcrafted-family (VTM) truncation range (<code>_handcrafted</code>).
DCT: orthonormal 2-D DCT-II of 16x16 blocks of raw feature values. Token correlation skips the first token
(cls/BOS) for DINOv2 and Llama. <code>paper_*</code>: supplement Table 3 (its GM, "scaled by 1e5", is left out:
its scaling is not defined). {{ seconds }} s in all.{% if reconstruction %} Reconstructed: {{ reconstruction }}.{% endif %}</p>
<p>Tables: <a href="stats.csv">stats.csv</a>, <a href="samples.csv">samples.csv</a>, <a href="outliers.csv">outliers.csv</a></p>
<ul>{% for task in tasks %}<li><a href="#{{ task.name }}">{{ task.name }}</a>: {{ task.title }}</li>{% endfor %}</ul>
{% for task in tasks %}
<h2 id="{{ task.name }}">{{ task.name }}: {{ task.title }} ({{ task.samples }} samples)</h2>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in task.rows %}<tr>{% for c in columns %}<td>{{ row[c] }}</td>{% endfor %}</tr>{% endfor %}</table>
<h3>Outlier channels</h3>
<table><tr><th>layer</th><th>rank</th><th>channel</th><th>max |x|</th><th>peak</th><th>mean</th><th>/ median</th></tr>
{% for o in task.outliers %}<tr><td>{{ o.layer }}</td><td>{{ o.rank }}</td><td>{{ o.channel }}</td><td>{{ o.max_abs }}</td>
<td>{{ o.peak }}</td><td>{{ o.mean }}</td><td>{{ o.ratio_to_median }}</td></tr>{% endfor %}</table>
{% for fig in task.figures %}<h3>{{ fig.caption }}</h3><p><img src="{{ fig.file }}" alt="{{ task.name }} {{ fig.caption }}"></p>
{% endfor %}{% endfor %}
</body></html>
"""

COLUMNS = ["layer", "max", "min", "mean", "std", "excess_kurtosis", "iv_original", "gm_original", "iv_handcrafted", "gm_handcrafted",
           "dct_dc_energy", "dct_low4_energy", "tok_row_corr", "tok_lag1_autocorr",
           "below_original_range", "above_original_range", "paper_max", "paper_min", "paper_mean", "paper_iv"]


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return v


def write_html(summary: dict[str, Any], out: Path, dataset_name: str) -> Path:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True)
    tasks = []
    for name, t in summary["tasks"].items():
        outliers = [{k: _fmt(v) for k, v in o.items()} for o in summary["outlier_rows"] if o["task"] == name]
        tasks.append({"name": name, "title": t["title"], "samples": t["samples"], "figures": t["figures"],
                      "rows": [{c: _fmt(r[c]) for c in COLUMNS} for r in t["rows"]], "outliers": outliers})
    html = env.from_string(HTML).render(dataset=dataset_name, tasks=tasks, columns=COLUMNS,
                                        seconds=f"{summary['seconds']:.1f}",
                                        reconstruction=summary["reconstruction"])
    path = out / "index.html"
    atomic_write_text(path, html)
    return path
