"""What a run reports, as types: its record, cost, provenance and error, the plan of its ablation, and how a record
becomes JSON and back.

This module is the contract between the stages: training measures a `Cost`, the sweep writes a `RunRecord`,
the results read it back and tabulate it. It sits below all of them (it imports nothing of vlmlab), so each
stage can name the fields it fills or reads without importing a stage after it. The files themselves (where a
record lives, atomic writes, plans) are `vlmlab.results.records`; the table columns built from these fields
are `vlmlab.results.columns`.

Reading is strict: an unknown key, a missing key or a wrong shape is a `RecordError` naming the key, because a
silently dropped field would make a table quietly wrong. Records of an older schema are upgraded by
`vlmlab.results.migrate` (`vlmlab migrate`), which rewrites them under their new identity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

# 2: the optimizer and schedule became `_target_` configs (conf/optim), so every run's config and id changed.
SCHEMA_VERSION = 2

Status = Literal["done", "failed", "diverged", "missing"]
# "diverged" comes from the design: a run whose loss blew up gets a record like a failure. "missing" is never
# written: it is the stand-in for a planned run without a usable record.
WRITTEN_STATUSES = ("done", "failed", "diverged")
Seed = int | str


class RecordError(ValueError):
    """A record or plan that cannot be written or read; the message names the file and the problem."""


@dataclass
class Cost:
    """What a run (or one stage of it) spent and how big it was; None where it was not measured.

    A record keeps only the fields that were measured, so an older record without a newer field reads back with
    None there and shows an empty cell."""

    params_total: int | None = None
    params_trainable: int | None = None
    params_by_component: dict[str, dict[str, int]] | None = None
    visual_tokens_per_image: float | None = None  # per image as training sees it
    sequence_tokens_per_image: float | None = None  # tokens an image takes in the LM sequence (1 under xattn)
    visual_tokens_per_image_eval: float | None = None  # at evaluation (image splitting at inference)
    budget: dict[str, Any] | None = None  # vlmlab.train.budget: unit, value, the steps it resolved to
    train_steps: int | None = None
    train_seconds: float | None = None
    train_samples_per_second: float | None = None
    train_flops: int | None = None
    train_flops_per_sample: int | None = None
    train_tokens: int | None = None
    train_images: int | None = None
    peak_memory_mb: float | None = None
    peak_memory_kind: str | None = None  # what the peak means on the run's device (vlmlab.train.memory)
    devices: int | None = None
    micro_batch_size: int | None = None
    accumulation: int | None = None
    checkpoint_seconds: float | None = None  # time spent writing checkpoints, all saves together
    checkpoint_saves: int | None = None
    checkpoint_bytes: int | None = None  # size of the largest checkpoint on disk
    eval_seconds: float | None = None
    eval_samples: int | None = None
    eval_generated_tokens: float | None = None  # mean per evaluation sample
    inference_flops_per_sample: int | None = None
    val_loss: float | None = None  # a stage trained with validation at its end (tuning trials)
    stage: str | None = None  # the name of the stage this cost is of, in `stages`
    stages: list[Cost] | None = None  # a run of several stages: each one's cost
    data_skipped: dict[str, dict[str, int]] | None = None  # bad rows of the data, per source and reason
    vision_quality: float | None = None  # a zoo tower's linear-probe accuracy, % (vlmlab.models.zoo)
    lm_quality: float | None = None  # a zoo LM's held-out perplexity
    # Serving one request at a time on the run's device (vlmlab.eval.latency; the device is in the provenance):
    ttft_ms: float | None = None  # median ms to the first new token: image encoding, prefill and one token
    decode_tokens_per_s: float | None = None  # median new tokens per second after the first (greedy, KV cache)

    def to_dict(self) -> dict[str, Any]:
        """The measured fields as plain data (the ones left None are not written)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = [stage.to_dict() for stage in value] if f.name == "stages" else value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "cost") -> Cost:
        """A Cost from plain data; RecordError naming the key if one is unknown."""
        values = _known_keys(cls, data, where)
        if values.get("stages") is not None:
            if not isinstance(values["stages"], list):
                raise RecordError(f"{where}.stages must be a list of stage costs")
            values["stages"] = [cls.from_dict(stage, f"{where}.stages[{i}]") for i, stage in enumerate(values["stages"])]
        return cls(**values)


@dataclass(frozen=True)
class Provenance:
    """Which code, packages, device, data and command produced a record."""

    git_commit: str | None = None
    git_dirty: bool | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    python: str | None = None
    platform: str | None = None
    device: str | None = None
    command: str | None = None
    dataset_version: str | None = None


@dataclass(frozen=True)
class RunError:
    """Why a run did not finish: the exception's type, its message and, where there was one, its traceback."""

    type: str
    message: str
    traceback: str | None = None


@dataclass(frozen=True)
class ArmLabel:
    """Which ablation and arm a run belongs to."""

    name: str
    arm: str


@dataclass
class RunRecord:
    """Everything one run leaves: identity, labels, the resolved config, scores per benchmark, cost, provenance."""

    run_id: str
    ablation: ArmLabel
    seed: Seed
    status: Status
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    provenance: Provenance | None = None
    error: RunError | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def arm(self) -> str:
        """The arm of the ablation this run belongs to."""
        return self.ablation.arm

    @property
    def done(self) -> bool:
        """Whether the run finished and has scores."""
        return self.status == "done"

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object its file holds."""
        out = dataclasses.asdict(self)
        out["cost"] = self.cost.to_dict()
        return out

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, so the same content gives the same bytes."""
        try:
            return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"
        except (TypeError, ValueError) as exc:
            raise RecordError(f"not JSON-serialisable: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """A record from the JSON object of the current schema; RecordError naming the first bad key."""
        values = _known_keys(cls, data, "record")
        for key in ("run_id", "ablation", "seed", "status", "schema_version"):
            if key not in values:
                raise RecordError(f"missing required key '{key}'")
        if values["schema_version"] != SCHEMA_VERSION:
            raise RecordError(f"schema_version must be {SCHEMA_VERSION}")
        if values["status"] not in WRITTEN_STATUSES:
            raise RecordError(f"status {values['status']!r} is not one of {WRITTEN_STATUSES}")
        for key in ("config", "metrics"):
            if not isinstance(values.get(key, {}), dict):
                raise RecordError(f"{key} must be an object")
        values["ablation"] = _typed(ArmLabel, values["ablation"], "ablation")
        values["cost"] = Cost.from_dict(values.get("cost") or {})
        if values.get("provenance") is not None:
            values["provenance"] = _typed(Provenance, values["provenance"], "provenance")
        if values.get("error") is not None:
            values["error"] = _typed(RunError, values["error"], "error")
        return cls(**values)

    @classmethod
    def missing(cls, axis: str, arm: str, run_id: str, seed: Seed, problem: str | None = None) -> RunRecord:
        """The stand-in of a planned run that has no usable record (`problem` says why, when it has one)."""
        error = None if problem is None else RunError("record skipped", problem)
        return cls(run_id=run_id, ablation=ArmLabel(axis, arm), seed=seed, status="missing", error=error)


@dataclass(frozen=True)
class PlannedChance:
    """A benchmark's chance baseline: its most frequent training answer, given to every test item, and its score."""

    answer: str
    score: float


@dataclass(frozen=True)
class PlannedAblation:
    """What the tables need to know of an ablation: its question, arms, control, benchmarks and seeds."""

    name: str
    control: str
    arms: list[str]
    metrics: list[str]
    seeds: list[Seed]
    question: str | None = None
    paper_table: str | None = None
    scale: str | None = None  # the `+scale=` the sweep ran at; None for the tiny default (left out of the file)
    # How the table corrects its tests for their number (vlmlab.results.corrections); plans from before it: none.
    correction: str = "none"
    metric_of: dict[str, str] | None = None  # benchmark -> the metric it is scored with (None in older plans)
    chance: dict[str, PlannedChance] | None = None  # benchmark -> its chance baseline (None in older plans)

    def to_dict(self) -> dict[str, Any]:
        """The plan file's `ablation` object."""
        out = dataclasses.asdict(self)
        # Left out when unset, so that a plan written without them reads back to the same bytes.
        for key in ("scale", "metric_of", "chance"):
            if out[key] is None:
                del out[key]
        return out


@dataclass(frozen=True)
class PlannedRun:
    """One (arm, seed) run the sweep planned, by its identity."""

    run_id: str
    arm: str
    seed: Seed


@dataclass(frozen=True)
class Plan:
    """The current plan of one ablation: which runs make its table."""

    ablation: PlannedAblation
    runs: list[PlannedRun]
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """Canonical JSON text of the plan file."""
        data = {"schema_version": self.schema_version, "ablation": self.ablation.to_dict(),
                "runs": [dataclasses.asdict(run) for run in self.runs]}
        return json.dumps(data, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A plan from its JSON object; RecordError naming the first bad key."""
        values = _known_keys(cls, data, "plan")
        for key in ("schema_version", "ablation", "runs"):
            if key not in values:
                raise RecordError(f"missing required key '{key}'")
        ablation = _typed(PlannedAblation, values["ablation"], "ablation")
        if isinstance(ablation.chance, dict):
            chance = {name: _typed(PlannedChance, row, f"ablation.chance.{name}") for name, row in ablation.chance.items()}
            ablation = dataclasses.replace(ablation, chance=chance)
        if not isinstance(values["runs"], list):
            raise RecordError("runs must be a list")
        runs = [_typed(PlannedRun, run, f"runs[{i}]") for i, run in enumerate(values["runs"])]
        return cls(ablation, runs, values["schema_version"])


T = TypeVar("T")


def _known_keys(cls: type, data: Any, where: str) -> dict[str, Any]:
    """`data` as keyword arguments of dataclass `cls`; RecordError if it is not an object or has a foreign key."""
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(data) - known):
        raise RecordError(f"{where} has unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    return dict(data)


def _typed(cls: type[T], data: Any, where: str) -> T:
    """A frozen dataclass from an object, naming the missing key when one is required."""
    values = _known_keys(cls, data, where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise RecordError(f"{where}: {exc}") from None
