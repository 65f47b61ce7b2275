"""Study step 2: learning rate 1e-5 .. 1e-2 on a log grid, 3 seeds per point.

python -m convnext_jax.sweep run --config configs/sweeps/lr.py:tiny --workdir runs/lr_tiny --workers 2
(TPE instead of the grid: --config.sweep.sampler=tpe --config.sweep.num_trials=20
 --config.sweep.space='optim.lr: loguniform(1e-5, 1e-2)')
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    if tiny:
        return with_sweep(
            config, space="optim.lr: grid(1e-4, 1e-3, 1e-2)", seeds=2, pruner="median", pruner_startup_trials=2
        )
    return with_sweep(config, space="optim.lr: loggrid(1e-5, 1e-2, 7)", seeds=3, pruner="median")
