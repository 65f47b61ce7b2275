"""Search spaces over config keys, written as one string so they override from the command line:

    "optim.lr: loguniform(1e-5, 1e-2); batch_size: grid(32, 64, 128); model.name: choice(convnext_atto, convnextv2_atto)"

Distributions: loguniform(lo, hi), uniform(lo, hi), int(lo, hi[, step]), logint(lo, hi),
choice(v, ...), grid(v, ...), loggrid(lo, hi, n) (n log-spaced values). The grid sampler needs
finite values (grid / choice / loggrid) for every key; random and TPE take any.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
from typing import Any

import ml_collections
import optuna

from convnext_jax.errors import UserError

KINDS = ("loguniform", "uniform", "int", "logint", "choice", "grid", "loggrid")


class SearchSpaceError(UserError, ValueError):
    """A search space that cannot be swept (syntax, unknown key, empty, wrong ranges)."""


@dataclasses.dataclass(frozen=True)
class Dimension:
    key: str  # dotted config key, e.g. "optim.lr"
    kind: str
    args: tuple[Any, ...]

    @property
    def values(self) -> tuple[Any, ...] | None:
        """The finite set of values (grid/choice/loggrid), else None."""
        if self.kind in ("grid", "choice"):
            return self.args
        if self.kind == "loggrid":
            lo, hi, n = self.args
            return tuple(float(f"{lo * (hi / lo) ** (i / (n - 1)):.6g}") for i in range(n)) if n > 1 else (lo,)
        return None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.values is not None:
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind in ("loguniform", "uniform"):
            return trial.suggest_float(self.key, *self.args, log=self.kind == "loguniform")
        lo, hi, *step = self.args
        return trial.suggest_int(self.key, lo, hi, step=step[0] if step else 1, log=self.kind == "logint")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Name):  # bare words are strings: choice(convnext_atto, convnextv2_atto)
        return node.id
    return ast.literal_eval(node)


def _check(dim: Dimension) -> None:
    kind, args = dim.kind, dim.args
    where = f"search space {dim.key}: {kind}{args}"
    if kind in ("grid", "choice"):
        if not args:
            raise SearchSpaceError(f"{where}: needs at least one value")
        if len(set(map(repr, args))) != len(args):
            raise SearchSpaceError(f"{where}: repeated values")
        for value in args:
            if not isinstance(value, (bool, int, float, str)) and value is not None:
                raise SearchSpaceError(f"{where}: values must be numbers, strings or booleans, got {value!r}")
        return
    if kind == "loggrid":
        if len(args) != 3 or not (0 < args[0] < args[1]) or not isinstance(args[2], int) or args[2] < 1:
            raise SearchSpaceError(f"{where}: expected loggrid(lo, hi, n) with 0 < lo < hi and n >= 1")
        return
    if len(args) not in ((2, 3) if kind == "int" else (2,)):
        raise SearchSpaceError(f"{where}: expected {kind}(lo, hi{', step' if kind == 'int' else ''})")
    lo, hi = args[:2]
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) or not lo < hi:
        raise SearchSpaceError(f"{where}: expected numbers with lo < hi")
    if kind in ("int", "logint") and not all(isinstance(a, int) for a in args):
        raise SearchSpaceError(f"{where}: bounds must be integers")
    if kind in ("loguniform", "logint") and lo <= 0:
        raise SearchSpaceError(f"{where}: a log scale needs lo > 0")


def parse_space(text: str) -> list[Dimension]:
    """'key: kind(args); ...' -> dimensions, in order. Raises SearchSpaceError naming the bad part."""
    dims = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, spec = part.partition(":")
        key, spec = key.strip(), spec.strip()
        if not sep or not key or not spec:
            raise SearchSpaceError(f"search space entry {part!r}: expected 'config.key: kind(args)'")
        try:
            call = ast.parse(spec, mode="eval").body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                raise SyntaxError("not a call")
            args = tuple(_literal(a) for a in call.args)
        except (SyntaxError, ValueError) as e:
            raise SearchSpaceError(
                f"search space entry {part!r}: cannot parse {spec!r} ({e}); "
                f"expected one of {', '.join(k + '(...)' for k in KINDS)}"
            ) from e
        if call.func.id not in KINDS:
            raise SearchSpaceError(
                f"search space entry {part!r}: unknown distribution {call.func.id!r}; use one of {', '.join(KINDS)}"
            )
        if any(d.key == key for d in dims):
            raise SearchSpaceError(f"search space: key {key!r} appears twice")
        dim = Dimension(key, call.func.id, args)
        _check(dim)
        dims.append(dim)
    return dims


def validate_keys(dims: list[Dimension], config: ml_collections.ConfigDict) -> None:
    """Every key must name an existing config value; errors name the closest key."""
    for dim in dims:
        *parents, leaf = dim.key.split(".")
        node = config
        for depth, name in enumerate(parents):
            if not isinstance(node, ml_collections.ConfigDict) or name not in node:
                raise SearchSpaceError(
                    f"search space key {dim.key!r}: {'.'.join(parents[: depth + 1])!r} is not a "
                    f"config section{_did_you_mean(name, node)}"
                )
            node = node[name]
        if (
            not isinstance(node, ml_collections.ConfigDict)
            or leaf not in node
            or isinstance(node[leaf], ml_collections.ConfigDict)
            or leaf == "sweep"
        ):
            raise SearchSpaceError(f"search space key {dim.key!r} is not a config value{_did_you_mean(leaf, node)}")


def _did_you_mean(name: str, options: Any) -> str:
    import difflib

    keys = list(options.keys()) if hasattr(options, "keys") else list(options)
    close = difflib.get_close_matches(name, keys, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def grid_points(dims: list[Dimension]) -> list[dict[str, Any]]:
    """The full product of the dimensions' values, in order (first key slowest)."""
    missing = [d.key for d in dims if d.values is None]
    if missing:
        raise SearchSpaceError(
            f"the grid sampler needs finite values for every key; {missing} use a continuous "
            "distribution: write grid(...)/loggrid(lo, hi, n)/choice(...), or use sampler "
            "'random' or 'tpe'"
        )
    return [dict(zip((d.key for d in dims), combo)) for combo in itertools.product(*(d.values for d in dims))]


def apply_params(config: ml_collections.ConfigDict, params: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with `params` ({dotted key: value}) set; types follow the config's."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        current = node.get(leaf) if leaf in node else None
        if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float):
            if not math.isclose(value, round(value)):
                raise SearchSpaceError(f"{key} is an integer setting, got {value}")
            value = int(round(value))
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        node[leaf] = value
    config.lock()
    return config
