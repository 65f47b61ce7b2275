"""Communication volume of a compiled step, read from its optimized HLO: the all-reduces, their
bytes, and whether any runs inside a loop (e.g. once per gradient-accumulation micro-step)."""

from __future__ import annotations

import re
from typing import Any

_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "bf16": 2,
    "f16": 2,
    "s16": 2,
    "u16": 2,
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "s64": 8,
    "u64": 8,
}
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$")
_CALLEE = re.compile(r"(?:body|condition|to_apply|calls|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_SHAPE = re.compile(r"\b(pred|[sfu]\d+|bf16)\[([\d,]*)\]")


def _computations(hlo: str) -> dict[str, list[str]]:
    bodies: dict[str, list[str]] = {}
    current = None
    for line in hlo.splitlines():
        match = _COMPUTATION.match(line.strip())
        if match:
            current = match.group(1)
            bodies[current] = []
        elif line.strip() == "}":
            current = None
        elif current is not None:
            bodies[current].append(line)
    return bodies


def _callees(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for line in lines:
        names.update(_CALLEE.findall(line))
        for group in _BRANCHES.findall(line):
            names.update(name.strip().lstrip("%") for name in group.split(","))
    return names


def _result_bytes(line: str) -> int:
    result_type = line.split("=", 1)[1].split("all-reduce", 1)[0]
    total = 0
    for dtype, dims in _SHAPE.findall(result_type):
        size = 1
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size * _BYTES.get(dtype, 4)
    return total


def all_reduce_stats(hlo: str) -> dict[str, Any]:
    """{'count', 'bytes', 'in_loops'}: all-reduce ops of an optimized HLO module (`compiled.as_text()`),
    their total result bytes, and how many sit in a while-loop body (run once per iteration)."""
    comps = _computations(hlo)
    loop_bodies = set()
    for lines in comps.values():
        for line in lines:
            if " while(" in line:
                loop_bodies.update(re.findall(r"body=%?([\w.\-]+)", line))
    in_loop, stack = set(), list(loop_bodies)
    while stack:
        name = stack.pop()
        if name in in_loop or name not in comps:
            continue
        in_loop.add(name)
        stack.extend(_callees(comps[name]))
    count = loop_count = total = 0
    for name, lines in comps.items():
        for line in lines:
            if re.search(r"\ball-reduce(-start)?\(", line):
                count += 1
                total += _result_bytes(line)
                loop_count += name in in_loop
    return {"count": count, "bytes": total, "in_loops": loop_count}
