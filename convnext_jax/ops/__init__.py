"""ConvNeXt's compute-heavy ops (depthwise conv, LayerNorm, GELU, dense) behind one table of
implementations (XLA, native CPU kernels), resolved once when a model is built."""

from convnext_jax.ops.table import (
    IMPLEMENTATIONS,
    NATIVE,
    OPTION,
    OpSet,
    check_choice,
    impl_choices,
    implementation,
    resolve_impl,
    resolve_ops,
)

__all__ = [
    "IMPLEMENTATIONS",
    "NATIVE",
    "OPTION",
    "OpSet",
    "check_choice",
    "impl_choices",
    "implementation",
    "resolve_impl",
    "resolve_ops",
]
