"""Study step 4: weight decay 1e-5 .. 1e-1 (log grid), 3 seeds per point.

python -m convnext_jax.sweep run --config configs/sweeps/weight_decay.py:tiny --workdir runs/wd_tiny
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    if tiny:
        return with_sweep(config, space="optim.weight_decay: grid(1e-5, 1e-3, 1e-1)", seeds=2)
    return with_sweep(config, space="optim.weight_decay: loggrid(1e-5, 1e-1, 5)", seeds=3)
