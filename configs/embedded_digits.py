"""Default job: a small ConvNeXt on the embedded real dataset (sklearn digits), CPU in about a minute.

    python -m convnext_jax.main --config configs/embedded_digits.py --workdir runs/digits
    python -m convnext_jax.main --config configs/embedded_digits.py:v1 --workdir runs/digits_v1 --config.num_epochs=3

Argument: `v2` (ConvNeXt-V2, the default) or `v1`.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, version="v2")
    if args.version not in ("v1", "v2"):
        raise common.ConfigError(f"embedded_digits.py takes v1 or v2, got {args.version!r}")
    config = common.digits_recipe("convnextv2_atto" if args.version == "v2" else "convnext_atto")
    config.lock()
    return config
