"""The zoo's table: each pretrained backbone's quality at each level, from the records `vlmlab pretrain` wrote
(results/zoo/*.json). The laptop's version of the x-axes of the paper's backbone tables: ImageNet linear-probe
accuracy for towers (Table 2), the LM's own benchmark for LMs (Table 1)."""

from __future__ import annotations

import re
from pathlib import Path

from vlmlab.results.columns import human_count
from vlmlab.results.records import read_record
from vlmlab.run_record import RunRecord

ZOO_DIR = "zoo"
DECIMALS = {"probe_accuracy": 1, "perplexity": 3}  # perplexities near the language's floor differ in the third
_LEVEL = re.compile(r"level_(\d+)/(.+)")
# What each quality metric is, for the caption, by the metric's name in the records.
METRIC_MEANINGS = {
    "probe_accuracy": "linear-probe accuracy (%) of the tower's mean-pooled features on held-out images, the mean "
                      "over four attributes (colour, shape, dot count, word), higher is better",
    "perplexity": "perplexity on held-out text of the suite's language, lower is better",
}


def zoo_records(results_dir: str | Path) -> list[RunRecord]:
    """The zoo's build records, by backbone name."""
    return sorted((read_record(path) for path in (Path(results_dir) / ZOO_DIR).glob("*.json")),
                  key=lambda record: record.ablation.arm)


def _levels(record: RunRecord) -> dict[int, dict[str, float]]:
    levels: dict[int, dict[str, float]] = {}
    for key, value in record.metrics.items():
        if match := _LEVEL.fullmatch(key):
            levels.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return dict(sorted(levels.items()))


def render_zoo(records: list[RunRecord]) -> str:
    """The Markdown table of every backbone and level."""
    meanings = "; ".join(f"{name}: {meaning}" for name, meaning in METRIC_MEANINGS.items())
    lines = ["## zoo", "", "The pretrained tiny backbones (`vlmlab pretrain`, conf/zoo/): each level is a checkpoint "
             f"of one pretraining run. Quality: {meanings}. train s: the whole run's "
             "pretraining time on the machine the record names.", "",
             "| backbone | recipe | params | level | step | quality | value | train s |",
             "| :--- | :--- | ---: | ---: | ---: | :--- | ---: | ---: |"]
    for record in records:
        for level, values in _levels(record).items():
            metric = "perplexity" if "perplexity" in values else "probe_accuracy"
            lines.append(f"| {record.ablation.arm} | {record.run_id} | {human_count(record.cost.params_total)} | "
                         f"{level} | {int(values['step'])} | {metric} | {values[metric]:.{DECIMALS[metric]}f} | "
                         f"{record.cost.train_seconds:.0f} |")
    return "\n".join(lines) + "\n"
