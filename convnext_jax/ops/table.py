"""The table of ops and their implementations, and the choice for 'auto'.

Every op has one signature whatever the implementation:

    dwconv(x, kernel, bias) | layer_norm(x, scale, bias, eps) | gelu(x) | dense(x, kernel, bias)

`resolve_ops` turns the model's choices ('auto' or a name) into callables once, when the
model is built; the modules call what they were given. Implementation modules are imported
only when chosen, so this table (and the configs that validate against it) import no
kernels. Names of the native kernels live in `convnext_jax/kernels/targets.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from convnext_jax.errors import ConfigError

NATIVE = "ffi"  # the C++ XLA:CPU kernels (convnext_jax/kernels)

# op -> {implementation name: (module, function)}
IMPLEMENTATIONS: dict[str, dict[str, tuple[str, str]]] = {
    "dwconv": {
        "lax": ("convnext_jax.ops.dwconv", "dwconv_lax"),
        "lax_vjp": ("convnext_jax.ops.dwconv", "dwconv_lax_vjp"),
        "shift": ("convnext_jax.ops.dwconv", "dwconv_shift"),
        NATIVE: ("convnext_jax.ops.dwconv", "dwconv_ffi"),
    },
    "layer_norm": {
        "xla": ("convnext_jax.ops.layer_norm", "layer_norm"),
        NATIVE: ("convnext_jax.ops.layer_norm", "layer_norm_ffi"),
    },
    "gelu": {"xla": ("convnext_jax.ops.gelu", "gelu"), NATIVE: ("convnext_jax.ops.gelu", "gelu_ffi")},
    "dense": {"xla": ("convnext_jax.ops.dense", "dense"), "autodiff": ("convnext_jax.ops.dense", "dense_autodiff")},
}
# op -> the ConvNeXtConfig field (and training config key model.<field>) that chooses it
OPTION = {"dwconv": "dwconv_impl", "layer_norm": "norm_impl", "gelu": "gelu_impl", "dense": "dense_impl"}
# What 'auto' picks where the native kernels do not apply (measured in docs/BENCHMARKS.md: on CPU,
# and on an H200, where 'lax' (cuDNN's grouped conv) beat 'lax_vjp' in the whole train step).
_PORTABLE = {
    "dwconv": {"cpu": "shift", "default": "lax"},
    "layer_norm": {"default": "xla"},
    "gelu": {"default": "xla"},
    "dense": {"default": "xla"},
}


def impl_choices(op: str) -> tuple[str, ...]:
    """The names an option accepts: 'auto' and every implementation of `op`."""
    return ("auto", *IMPLEMENTATIONS[op])


def check_choice(op: str, impl: str) -> None:
    """ConfigError naming the option and its choices when `impl` is not one of them."""
    if impl not in impl_choices(op):
        raise ConfigError(f"{OPTION[op]} must be one of {', '.join(impl_choices(op))}; got {impl!r}")


def resolve_impl(op: str, impl: str = "auto", backend: str | None = None) -> str:
    """The implementation name `impl` stands for on `backend` (default: JAX's default backend).

    'auto' is the native kernel on CPU when it exists for the op and builds (with a warning
    and the portable choice otherwise), and the portable implementation elsewhere. An explicit
    'ffi' needs the CPU backend and a working C++ compiler.
    """
    import jax

    check_choice(op, impl)
    backend = backend or jax.default_backend()
    if impl == NATIVE:
        if backend != "cpu":
            others = ", ".join(i for i in impl_choices(op) if i != NATIVE)
            raise ConfigError(f"{OPTION[op]}='{NATIVE}' is a CPU kernel; the backend is {backend!r} (use {others})")
        from convnext_jax.kernels import load_cpu_kernels

        load_cpu_kernels()  # KernelBuildError with the compiler's message
        return impl
    if impl != "auto":
        return impl
    if backend == "cpu" and NATIVE in IMPLEMENTATIONS[op]:
        from convnext_jax.kernels import cpu_kernels_available

        if cpu_kernels_available():
            return NATIVE
    portable = _PORTABLE[op]
    return portable.get(backend, portable["default"])


def implementation(op: str, name: str) -> Callable:
    """The function of implementation `name` (not 'auto') of `op`."""
    check_choice(op, name)
    module, function = IMPLEMENTATIONS[op][name]
    return getattr(importlib.import_module(module), function)


@dataclasses.dataclass(frozen=True)
class OpSet:
    """The resolved implementations a model runs with (and their names, for logs)."""

    dwconv: Callable
    layer_norm: Callable
    gelu: Callable
    dense: Callable
    names: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return " ".join(f"{op}={name}" for op, name in self.names)


def resolve_ops(
    *,
    dwconv: str = "auto",
    layer_norm: str = "auto",
    gelu: str = "auto",
    dense: str = "auto",
    backend: str | None = None,
) -> OpSet:
    """Resolve every op's choice once: the callables the model's modules will call."""
    chosen = {"dwconv": dwconv, "layer_norm": layer_norm, "gelu": gelu, "dense": dense}
    names = {op: resolve_impl(op, impl, backend) for op, impl in chosen.items()}
    return OpSet(**{op: implementation(op, name) for op, name in names.items()}, names=tuple(names.items()))
