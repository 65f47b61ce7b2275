"""ConvNeXt architecture and execution options, and the depth/width scaling rule."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from convnext_jax.errors import ConfigError
from convnext_jax.ops.table import OPTION, check_choice

REMAT_POLICIES = ("none", "full", "dots")
GRN_STATS = ("sample", "batch")


@dataclasses.dataclass(frozen=True)
class ConvNeXtConfig:
    """Everything needed to build a ConvNeXt V1/V2 model.

    Architecture fields mirror timm's `ConvNeXt` arguments. `conv_mlp` does not change
    the maths: it records whether the PyTorch model stores the MLP as 1x1 convs
    (timm atto..nano) or as Linear layers, so weight import/export use the right shapes.
    """

    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    use_grn: bool = False
    ls_init_value: float | None = 1e-6
    conv_mlp: bool = False
    norm_eps: float = 1e-6
    kernel_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    in_chans: int = 3
    num_classes: int = 1000
    head_init_scale: float = 1.0
    head_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    # GRN statistics: 'sample' (per image, the paper's) or 'batch' (over every position of the batch:
    # the official sparse FCMAE encoder's MinkowskiGRN). Only the FCMAE encoder uses 'batch'.
    grn_stats: str = "sample"
    # Execution options (no effect on parameters).
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    remat_segments: int = 0
    scan_blocks: bool = False
    # Op implementations (convnext_jax.ops): 'auto' or a name from the ops table, resolved when the model is built.
    dwconv_impl: str = "auto"  # 'lax' | 'shift' | 'ffi' (native CPU kernel)
    norm_impl: str = "auto"  # LayerNorm: 'xla' | 'ffi'
    gelu_impl: str = "auto"  # GELU: 'xla' | 'ffi'
    dense_impl: str = "auto"  # 'xla' (flattened-rows VJP) | 'autodiff'

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ConfigError(f"depths {self.depths} and dims {self.dims} must be non-empty and of equal length")
        if any(d < 1 for d in self.depths) or any(c < 1 for c in self.dims):
            raise ConfigError(f"every depth and dim must be >= 1, got depths={self.depths} dims={self.dims}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {self.kernel_size}")
        if self.grn_stats not in GRN_STATS:
            raise ConfigError(f"grn_stats must be one of {GRN_STATS}, got {self.grn_stats!r}")
        if self.remat not in REMAT_POLICIES:
            raise ConfigError(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        for op, option in OPTION.items():
            check_choice(op, getattr(self, option))
        if self.remat_segments < 0:
            raise ConfigError(f"remat_segments must be >= 0 (0 = one segment per block), got {self.remat_segments}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0 (0 = no classifier), got {self.num_classes}")

    @property
    def version(self) -> int:
        """2 for ConvNeXt V2 (GRN), 1 otherwise."""
        return 2 if self.use_grn else 1

    def replace(self, **changes: Any) -> ConvNeXtConfig:
        return dataclasses.replace(self, **changes)


def round_to_multiple(value: float, multiple: int = 8) -> int:
    """Round to the nearest multiple (at least `multiple`), never going down by more than 10%."""
    rounded = max(multiple, int(value + multiple / 2) // multiple * multiple)
    if rounded < 0.9 * value:
        rounded += multiple
    return rounded


def scale_architecture(
    depths: tuple[int, ...], dims: tuple[int, ...], depth_multiplier: float = 1.0, width_multiplier: float = 1.0
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The scaling rule: every stage depth x `depth_multiplier` (rounded up, >= 1), every
    stage width x `width_multiplier` (rounded to a multiple of 8).

    Rounding up keeps the stage ratio of the base variant (e.g. tiny's 1:1:3:1) and never
    removes a stage. Examples: tiny (3,3,9,3) x2.0 -> (6,6,18,6); x0.5 -> (2,2,5,2).
    """
    if depth_multiplier <= 0 or width_multiplier <= 0:
        raise ConfigError(f"multipliers must be > 0, got depth={depth_multiplier} width={width_multiplier}")
    new_depths = tuple(max(1, math.ceil(d * depth_multiplier - 1e-9)) for d in depths)
    new_dims = tuple(round_to_multiple(c * width_multiplier) if width_multiplier != 1.0 else c for c in dims)
    return new_depths, new_dims
