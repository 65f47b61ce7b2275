"""Config schemas: every key with its default, meaning and allowed values, in one declaration.

A schema is a nested dict of `Key`s. From it come the default `ml_collections.ConfigDict`
(`build`), the checks every config gets before anything is built or written (`check`: types,
choices, ranges, with the closest valid name for a typo), and the listing of every key with its
default and meaning (`describe`). Cross-key rules live with the schema's owner
(`convnext_jax.train.config`, `convnext_jax.sweep.spec`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections

Schema = Mapping[str, Any]  # str -> Key | Schema


@dataclasses.dataclass(frozen=True)
class Key:
    """One config value.

    default: its default (its type is the key's type; ints are accepted for floats).
    help: what it means, one line.
    choices: the allowed values (or a function returning them, for lists known at run time).
    low/high: the allowed range, inclusive unless `low_open`/`high_open`.
    item_low: for tuples, the smallest allowed element.
    length: for tuples, the required length.
    run: True if changing it changes what a run computes (a resumed run must keep it); False
      for how it runs (speed, memory, logging), which may change on a resume.
    """

    default: Any
    help: str
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    item_low: float | None = None
    length: int | None = None
    run: bool = True

    def allowed(self) -> tuple[Any, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def describe_allowed(self) -> str:
        allowed = self.allowed()
        if allowed is not None:
            return "one of " + ", ".join(repr(c) if c == "" else str(c) for c in allowed)
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def walk(schema: Schema, prefix: str = "") -> Iterator[tuple[str, Key]]:
    """(dotted key, Key) for every key, depth first in declaration order."""
    for name, value in schema.items():
        if isinstance(value, Key):
            yield prefix + name, value
        else:
            yield from walk(value, prefix + name + ".")


def build(schema: Schema) -> ml_collections.ConfigDict:
    """The default config of a schema (unlocked)."""
    config = ml_collections.ConfigDict()
    for name, value in schema.items():
        config[name] = value.default if isinstance(value, Key) else build(value)
    return config


def lookup(schema: Schema, dotted: str) -> Key | None:
    node: Any = schema
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Key) else None


def closest(name: str, options: Any) -> str:
    """' (did you mean X?)' for the closest option, or ''."""
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_key_message(schema: Schema, dotted: str) -> str:
    keys = [k for k, _ in walk(schema)]
    hint = closest(dotted, keys)
    if not hint:  # a typo in the last part: compare with the keys of the same section
        section, _, leaf = dotted.rpartition(".")
        siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == section}
        match = difflib.get_close_matches(leaf, list(siblings), n=1)
        hint = f" (did you mean {siblings[match[0]]!r}?)" if match else ""
    return f"unknown config key {dotted!r}{hint}"


def _type_error(dotted: str, key: Key, value: Any) -> str | None:
    expected = type(key.default)
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if expected is tuple and isinstance(value, (tuple, list)):
        return None
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return None
    return f"{dotted} must be {expected.__name__}, got {value!r} ({type(value).__name__})"


def check_value(dotted: str, key: Key, value: Any) -> str | None:
    """The problem with `value` for `key`, or None."""
    problem = _type_error(dotted, key, value)
    if problem:
        return problem
    allowed = key.allowed()
    if allowed is not None and value not in allowed:
        return f"{dotted} must be {key.describe_allowed()}; got {value!r}{closest(value, allowed)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = key.low is not None and (value <= key.low if key.low_open else value < key.low)
        too_high = key.high is not None and (value >= key.high if key.high_open else value > key.high)
        if too_low or too_high or (isinstance(value, float) and not math.isfinite(value)):
            return f"{dotted} must be {key.describe_allowed()}; got {value!r}"
    if isinstance(value, (tuple, list)):
        if key.length is not None and len(value) != key.length:
            return f"{dotted} must have {key.length} values, got {len(value)}: {tuple(value)!r}"
        if key.item_low is not None and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= key.item_low for v in value
        ):
            return f"{dotted} must hold numbers >= {key.item_low}, got {tuple(value)!r}"
    return None


def check(
    schema: Schema, config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "", root: Schema | None = None
) -> list[str]:
    """Every problem of `config` against `schema`: unknown keys (with the closest name), missing
    sections, wrong types, values outside their choices or ranges. (`root`: the whole schema,
    when `schema` is one of its sections at `prefix`.)"""
    root = root or schema
    problems = []
    for name in config.keys():
        if name not in schema:
            problems.append(unknown_key_message(root, prefix + name))
    for name, entry in schema.items():
        dotted = prefix + name
        if name not in config:
            continue  # a schema key the config does not set keeps its default when merged
        value = config[name]
        if isinstance(entry, Key):
            problem = check_value(dotted, entry, value)
            if problem:
                problems.append(problem)
        elif isinstance(value, (ml_collections.ConfigDict, Mapping)):
            problems += check(entry, value, dotted + ".", root)
        else:
            problems.append(f"{dotted} must be a section of keys, got {value!r}")
    return problems


def json_tuples(value: Any) -> Any:
    """A config read from JSON, with its lists as tuples (JSON has no tuples; config sequences are)."""
    if isinstance(value, dict):
        return {k: json_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(json_tuples(v) for v in value)
    return value


def flatten(config: ml_collections.ConfigDict | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a config (tuples for sequences)."""
    out = {}
    for name, value in config.items():
        if isinstance(value, (ml_collections.ConfigDict, Mapping)):
            out.update(flatten(value, prefix + name + "."))
        else:
            out[prefix + name] = tuple(value) if isinstance(value, list) else value
    return out


def describe(schema: Schema, config: ml_collections.ConfigDict | None = None) -> str:
    """Every key: its value in `config` (when given and different), default, meaning and allowed values."""
    values = flatten(config) if config is not None else {}
    lines = []
    for dotted, key in walk(schema):
        current = values.get(dotted, key.default)
        shown = f"{dotted} = {current!r}" + (f"  (default {key.default!r})" if current != key.default else "")
        allowed = key.describe_allowed()
        lines.append(
            f"{shown}\n    {key.help}"
            + (f" [{allowed}]" if allowed else "")
            + ("" if key.run else " (may change when resuming)")
        )
    return "\n".join(lines)
