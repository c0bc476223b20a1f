"""The cost columns of a table, one registry entry each: which `Cost` field, how an arm's runs combine, how it
prints, what the caption says of it, and when it is shown.

Adding a cost column is one entry here (and the line in training that measures its `Cost` field). Every output
follows the registry: the summary (`tables.summarise`), the Markdown and LaTeX tables and caption (`render`,
`latex`) and the CSV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from vlmlab.results.stats import describe
from vlmlab.run_record import Cost

MINUS = "\u2212"  # a real minus sign, the width of "+", so columns of deltas line up
UNKNOWN = "\u2013"  # en dash: a value that no finished run reports
Shown = Callable[[pd.DataFrame, str], bool]  # (summary, the column's summary name) -> whether it is shown


def number(value: float, minus: str = MINUS) -> str:
    """One decimal, with a real minus sign."""
    return f"{value:.1f}".replace("-", minus)


def count(value: Any) -> str:
    """An integer cell, or the unknown mark."""
    return UNKNOWN if pd.isna(value) else str(int(value))


def measured(value: Any) -> str:
    """A measured quantity to one decimal, or the unknown mark."""
    return UNKNOWN if pd.isna(value) else number(value)


def megabytes(value: Any) -> str:
    """A size in bytes as MB (2**20 bytes) to one decimal, or the unknown mark."""
    return UNKNOWN if pd.isna(value) else number(value / 2**20)


def _scaled(value: Any, units: tuple[str, ...]) -> str:
    """`value` to three significant digits with the first of `units` (powers of 1000) that keeps it below 1000."""
    if pd.isna(value):
        return UNKNOWN
    whole = int(value)
    if abs(whole) < 1000:
        return str(whole)
    for power, unit in enumerate(units[:-1], start=1):
        text = f"{whole / 1000**power:.3g}"
        # 999,999 rounds to "1e+03" thousand: that is 1M, so let the next unit print it.
        if abs(float(text)) < 1000:
            return text + unit
    return f"{whole / 1000**len(units):.3g}{units[-1]}"


def human_count(value: Any) -> str:
    """A parameter count the way papers print it: 5M, 740M, 1.02M, 8.3B."""
    return _scaled(value, ("K", "M", "B", "T"))


def human_flops(value: Any) -> str:
    """A FLOP count with SI prefixes: 340G, 1.2T, 6.31P."""
    return _scaled(value, ("K", "M", "G", "T", "P", "E"))


def number_or_nan(value: Any) -> float:
    """A value of a record (a score, a cost) as a float; anything absent or non-numeric is NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def first(values: Sequence[Any]) -> int | None:
    """A size, which matches across seeds: the first done run's, as an integer."""
    value = number_or_nan(values[0]) if values else float("nan")
    return None if np.isnan(value) else int(round(value))


def mean(values: Sequence[Any]) -> float:
    """A measurement that varies from run to run: the mean over the arm's done runs that have it."""
    return describe([number_or_nan(v) for v in values]).mean


def mean_int(values: Sequence[Any]) -> int | None:
    """A count that may vary across seeds (inference FLOPs follow the answers' lengths): the mean, whole."""
    value = mean(values)
    return None if np.isnan(value) else int(round(value))


def kinds(values: Sequence[Any]) -> str | None:
    """The distinct labels of the arm's runs (what their peak memory means), sorted and comma-joined."""
    return ", ".join(sorted({str(v) for v in values if v})) or None


def always(summary: pd.DataFrame, name: str) -> bool:
    """Shown in every table."""
    return True


def differs_from_visual_tokens(summary: pd.DataFrame, name: str) -> bool:
    """Shown where some arm's value is known and differs from its visual tokens per image."""
    values = summary[name]
    return bool(((values != summary["visual_tokens_per_image"]) & values.notna()).any())


def measured_somewhere(summary: pd.DataFrame, name: str) -> bool:
    """Shown where some arm has the value: a column that older records do not measure leaves their tables as
    they were."""
    return bool(summary[name].notna().any())


@dataclass(frozen=True)
class CostColumn:
    """One cost column of the tables."""

    name: str  # in the summary and the CSV header
    source: str  # the `Cost` field it reads from each done run
    combine: Callable[[Sequence[Any]], Any]  # the arm's value from its done runs' values, in run order
    csv_rank: int  # place among the CSV's cost columns (their order predates the registry and is kept)
    header: str | None = None  # in the Markdown and LaTeX tables; None: CSV only
    cell: Callable[[Any], str] = count
    # What the caption says: a column shown in every table in its shared sentence, any other in its own.
    meaning: str | Callable[[pd.DataFrame], str] | None = None
    in_table: Shown = always
    in_csv: Shown = always
    integer: bool = False  # a nullable integer column: empty (not 1.0e9 or nan) when unknown

    def __post_init__(self) -> None:
        if self.source not in {f.name for f in fields(Cost)}:
            raise ValueError(f"cost column {self.name!r} reads {self.source!r}, which is not a field of Cost")

    def value(self, costs: Sequence[Cost]) -> Any:
        """The arm's value from the costs of its done runs."""
        return self.combine([getattr(cost, self.source) for cost in costs])

    def describe(self, summary: pd.DataFrame) -> str | None:
        """What the caption says of this column in this table."""
        return self.meaning(summary) if callable(self.meaning) else self.meaning


# What the peak memory of a record means, by its `peak_memory_kind` (vlmlab.train.memory).
MEMORY_MEANINGS = {
    "cuda_allocated": "the peak of CUDA memory held by tensors during training (weights and optimizer state included)",
    "cpu_rss_delta": "how much the process's resident memory grew during training (peak minus start, sampled every "
                     "20 ms: a CPU has no allocator peak; an indicator, not an exact figure)",
}


def _memory_meaning(summary: pd.DataFrame) -> str:
    """What the peak MB column measures on the devices these records ran on."""
    found = sorted({kind for cell in summary["peak_memory_kind"].dropna() for kind in str(cell).split(", ")})
    if not found:
        return "peak MB: peak memory in training (not in these records)"
    meanings = " or ".join(MEMORY_MEANINGS.get(kind, kind) for kind in found)
    return "peak MB: " + meanings + (", depending on the run's device" if len(found) > 1 else "")


def three_decimals(value: Any) -> str:
    """A perplexity near the language's floor (about 1.9), where fewer decimals would hide the backbones'
    differences."""
    return UNKNOWN if pd.isna(value) else f"{value:.3f}"


COST_COLUMNS: tuple[CostColumn, ...] = (
    # The backbones' own quality, first: the paper's x-axis (ImageNet accuracy, MMLU) beside the VLM's scores.
    CostColumn("vision_quality", "vision_quality", mean, 13, "tower probe %", measured,
               "tower probe %: the pretrained zoo tower's linear-probe accuracy on held-out image attributes "
               "(colour, shape, count, word), the laptop's ImageNet axis (`vlmlab pretrain`)",
               in_table=measured_somewhere, in_csv=measured_somewhere),
    CostColumn("lm_quality", "lm_quality", mean, 14, "LM ppl", three_decimals,
               "LM ppl: the pretrained zoo LM's perplexity on held-out text of the suite's language (lower is "
               "better), the laptop's MMLU axis (`vlmlab pretrain`)", in_table=measured_somewhere,
               in_csv=measured_somewhere),
    CostColumn("params_total", "params_total", first, 0, "params", human_count,
               "params / trainable: total and trainable parameters", integer=True),
    CostColumn("params_trainable", "params_trainable", first, 1, "trainable", human_count, integer=True),
    CostColumn("visual_tokens_per_image", "visual_tokens_per_image", first, 2, "visual tokens", count,
               "visual tokens: per image", integer=True),
    CostColumn("sequence_tokens_per_image", "sequence_tokens_per_image", first, 3, "LM tokens", count,
               "LM tokens: tokens an image takes in the language model's sequence (1 under cross-attention, whose "
               "blocks attend to the visual tokens)", in_table=differs_from_visual_tokens, integer=True),
    CostColumn("visual_tokens_per_image_eval", "visual_tokens_per_image_eval", first, 4, "eval tokens", count,
               "eval tokens: visual tokens per image at evaluation (image splitting at inference)",
               in_table=differs_from_visual_tokens, integer=True),
    CostColumn("train_flops", "train_flops", mean_int, 6, "train FLOPs", human_flops,
               "train FLOPs: the run's training compute, counted from the model's shapes (matrix products and "
               "attention, a multiply-add being 2 FLOPs; forward plus a backward only where weights train or "
               "gradients must pass; padding and the optimizer left out) per sample, times the samples seen",
               integer=True),
    CostColumn("inference_flops_per_sample", "inference_flops_per_sample", mean_int, 7, "infer FLOPs", human_flops,
               "infer FLOPs: forward FLOPs per evaluation sample (image encoding, prefill and greedy decoding with "
               "the KV cache)", integer=True),
    # Serving latency (vlmlab.eval.latency), the cost MobileVLM and LLaVA-Phi report for small devices.
    CostColumn("ttft_ms_mean", "ttft_ms", mean, 15, "TTFT ms", measured,
               "TTFT ms: time to the first answer token serving one request on the run's device (batch 1, greedy, KV "
               "cache): image encoding, prefill and one token, the median over `latency.samples` test items",
               in_table=measured_somewhere, in_csv=measured_somewhere),
    CostColumn("decode_tokens_per_s_mean", "decode_tokens_per_s", mean, 16, "tok/s", measured,
               "tok/s: new tokens per second after the first one in those requests (median; every request decodes "
               "`latency.new_tokens` tokens)", in_table=measured_somewhere, in_csv=measured_somewhere),
    CostColumn("train_seconds_mean", "train_seconds", mean, 5, "train s", measured,
               "train s: mean training time in seconds"),
    CostColumn("train_samples_per_second_mean", "train_samples_per_second", mean, 8, "samples/s", measured,
               "samples/s: training samples per second"),
    CostColumn("peak_memory_mb_mean", "peak_memory_mb", mean, 9, "peak MB", measured, _memory_meaning),
    CostColumn("peak_memory_kind", "peak_memory_kind", kinds, 10),
    CostColumn("checkpoint_seconds_mean", "checkpoint_seconds", mean, 11, "ckpt s", measured,
               "ckpt s: seconds spent writing checkpoints during training, all saves together (mean over seeds)",
               in_table=measured_somewhere, in_csv=measured_somewhere),
    CostColumn("checkpoint_bytes_mean", "checkpoint_bytes", mean, 12, "ckpt MB", megabytes,
               "ckpt MB: the size of the run's largest checkpoint on disk (what training changes: frozen weights "
               "are rebuilt from the config, not saved)", in_table=measured_somewhere, in_csv=measured_somewhere),
)


def table_columns(summary: pd.DataFrame) -> list[CostColumn]:
    """The cost columns this table shows, in table order."""
    return [c for c in COST_COLUMNS if c.header is not None and c.in_table(summary, c.name)]


def csv_columns(summary: pd.DataFrame) -> list[str]:
    """The summary names of the cost columns the CSV holds, in CSV order."""
    return [c.name for c in sorted(COST_COLUMNS, key=lambda c: c.csv_rank) if c.in_csv(summary, c.name)]


def caption_sentences(summary: pd.DataFrame) -> tuple[str, list[str]]:
    """What the caption says of the cost columns: the shared sentence's parts (columns in every table) joined by
    "; ", and one sentence for each column shown only in some tables."""
    shown = table_columns(summary)
    shared = [text for c in shown if c.in_table is always and (text := c.describe(summary))]
    own = [f"{text}." for c in shown if c.in_table is not always and (text := c.describe(summary))]
    return "; ".join(shared), own
