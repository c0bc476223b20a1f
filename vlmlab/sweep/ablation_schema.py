"""The schema of `ablations/<name>.yaml`: typed dataclasses that OmegaConf checks the file against.

Every refusal is an AblationError naming the file and the dotted key (`arms.mlp[1]`, `tune.params.optim.lr_scale`)
with what the key must hold, in words; no OmegaConf trace reaches the user. Rules that span keys (the control is
one of the arms, an override reads key=value) are vlmlab.sweep.ablation's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Union, get_args, get_origin, get_type_hints

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, KeyValidationError, OmegaConfBaseException

from vlmlab.sweep.tune_space import TuneBlock


class AblationError(ValueError):
    """A bad ablation file or arm; the message names the file and the key."""


@dataclass
class ScaleBlock:
    """Schema of `scales.<name>`: what the file's arms become at that scale (an option of conf/scale/)."""

    common: Optional[List[str]] = None  # after the file's `common`
    arms: Optional[Dict[str, List[str]]] = None  # per arm, after the arm's own overrides
    drop: Optional[List[str]] = None  # arms that do not run at this scale (the paper's table has no such row)


class Correction(Enum):
    """How a table corrects its arm-versus-control tests for their number (vlmlab.results.corrections)."""

    holm = "holm"  # Holm–Bonferroni: the family-wise error rate
    benjamini_hochberg = "benjamini_hochberg"  # the false discovery rate
    none = "none"  # each test on its own


@dataclass
class AblationFile:
    """Schema of `ablations/<name>.yaml`: one design axis, its arms as lists of Hydra overrides, and its control."""

    question: str = MISSING
    control: str = MISSING  # the arm every other arm is compared with
    arms: Dict[str, List[str]] = MISSING  # arm name -> its Hydra overrides
    seeds: Optional[List[int]] = None  # None: three seeds from the run config's `seed` on (plan.DEFAULT_SEEDS)
    metrics: Optional[List[str]] = None  # None: every benchmark the run config's suite scores (or its eval.tasks)
    common: Optional[List[str]] = None  # overrides before every arm's own
    paper_table: Optional[str] = None
    notes: Optional[Dict[str, Any]] = None
    tune: Optional[TuneBlock] = None  # how `vlmlab tune` searches each arm
    scales: Optional[Dict[str, ScaleBlock]] = None  # per scale name, what the arms become there
    correction: Correction = Correction.holm  # of the table's tests, over all its arms and benchmarks


# OmegaConf reads "${...}" as an interpolation: it would resolve one (an override may hold one for Hydra) and does
# not type-check one. The schema sees the text with "${" disarmed, and the spec gets it back as written.
_ARMED, _DISARMED = "${", "$\0{"
_WORDS = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("true or false", "booleans"), Any: ("any value", "values")}
Key = Union[str, int]  # a mapping's key, or a list's index


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of the YAML file gives the same key twice."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"key {key!r} is given twice in one mapping (first at line {first_line})")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (plain YAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden on purpose
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in first:
                    raise DuplicateKeyError(key, line, first[key])
                first[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                pass
        return super().construct_mapping(node, deep=deep)


def _swap(value: Any, old: str, new: str) -> Any:
    """`value` with `old` replaced by `new` in every string it holds, in lists, mapping values and dataclasses."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_swap(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _swap(item, old, new) for key, item in value.items()}
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _swap(getattr(value, f.name), old, new)
                                             for f in dataclasses.fields(value)})
    return value


def _field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """`hint` without Optional, and whether it was Optional."""
    args = get_args(hint)
    if get_origin(hint) is Union and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def _describe(hint: Any) -> str:
    """What a value of the schema type `hint` is, in words."""
    hint, optional = _unwrap(hint)
    if dataclasses.is_dataclass(hint):
        words = f"a mapping with any of the keys {', '.join(_field_names(hint))}"
    elif get_origin(hint) is list:
        words = f"a list of {_WORDS.get(get_args(hint)[0], ('', 'values'))[1]}"
    elif get_origin(hint) is dict:
        words = f"a mapping of name -> {_describe(get_args(hint)[1])}"
    else:
        words = _WORDS.get(hint, (str(hint), ""))[0]
    return f"{words} (or null)" if optional else words


def _hint_at(at: tuple[Key, ...]) -> Any:
    """The schema type of the value at path `at` of the file."""
    hint: Any = AblationFile
    for key in at:
        hint, _ = _unwrap(hint)
        if dataclasses.is_dataclass(hint):
            hint = get_type_hints(hint).get(key, Any)
        elif get_origin(hint) in (list, dict):
            hint = get_args(hint)[-1]
        else:
            return Any
    return hint


def _dotted(at: tuple[Key, ...]) -> str:
    """Path `at` as the file's dotted key: arms.mlp[1]."""
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in at).lstrip(".")


def _branch(data: Any, at: tuple[Key, ...]) -> Any:
    """`data` with only the branch that leads to path `at` (a list keeps that one item)."""
    if not at:
        return data
    inner = _branch(data[at[0]], at[1:])
    return [inner] if isinstance(data, list) else {at[0]: inner}


def _merge(data: Any) -> OmegaConfBaseException | None:
    """What the schema has against `data`, or None."""
    try:
        OmegaConf.merge(OmegaConf.structured(AblationFile), data)
    except OmegaConfBaseException as err:
        return err
    return None


def _value(data: Any, at: tuple[Key, ...]) -> Any:
    """The value at path `at` of `data`."""
    for key in at:
        data = data[key]
    return data


def _children(data: Any, at: tuple[Key, ...]) -> list[tuple[Key, ...]]:
    """The paths one level below `at`, where the value there is the kind of container the schema expects."""
    node, (hint, _) = _value(data, at), _unwrap(_hint_at(at))
    if isinstance(node, list) and get_origin(hint) is list:
        return [(*at, index) for index in range(len(node))]
    if isinstance(node, dict) and (get_origin(hint) is dict or dataclasses.is_dataclass(hint)):
        return [(*at, key) for key in node]
    return []


def _refusal(path: Path, raw: dict[Any, Any], data: dict[Any, Any]) -> AblationError:
    """Why the schema refuses the file (`data`: `raw` disarmed): the deepest key whose value alone it refuses."""
    at: tuple[Key, ...] = ()
    while True:
        err = _merge(_branch(data, at))
        if isinstance(err, (ConfigKeyError, KeyValidationError)):  # a key at fault, which OmegaConf names itself
            parent = err.full_key[:-len(str(err.key))].rstrip(".")
            if isinstance(err, KeyValidationError):  # YAML read the key as a number, a boolean or null
                return AblationError(f"{path}: {parent}: key {err.key!r} is not a name: write it in quotes")
            known = ", ".join(_field_names(err.object_type))
            return AblationError(f"{path}: {err.full_key}: key {err.key!r} is not a field of "
                                 f"{f'`{parent}`' if parent else 'the ablation file'} (known: {known})")
        deeper = next((child for child in _children(data, at) if _merge(_branch(data, child))), None)
        if deeper is None:
            value = _value(raw, at)
            got = "null" if value is None else repr(value) if len(repr(value)) <= 80 else f"a {type(value).__name__}"
            return AblationError(f"{path}: {_dotted(at)}: must be {_describe(_hint_at(at))}, got {got}")
        at = deeper


def read_ablation_file(path: Path) -> AblationFile:
    """The file at `path` checked against the schema; AblationError naming the file and the key."""
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except DuplicateKeyError as err:
        raise AblationError(f"{path}: line {err.line}: {err}; YAML would keep only the last") from None
    except yaml.YAMLError as err:
        raise AblationError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise AblationError(f"{path}: expected a mapping with the keys {', '.join(_field_names(AblationFile))}, "
                            f"got {'an empty file' if raw is None else repr(raw)}")
    data = _swap(raw, _ARMED, _DISARMED)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(AblationFile), data)
    except OmegaConfBaseException:
        raise _refusal(path, raw, data) from None
    if missing := [name for name in _field_names(AblationFile) if name in OmegaConf.missing_keys(cfg)]:
        required = [f.name for f in dataclasses.fields(AblationFile) if f.default is MISSING]
        raise AblationError(f"{path}: {missing[0]}: missing; every ablation file gives {', '.join(required)}")
    return _swap(OmegaConf.to_object(cfg), _DISARMED, _ARMED)
