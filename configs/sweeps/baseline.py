"""Study step 1: the seed baseline repeated over seeds (run-to-run noise of every later comparison).

python -m convnext_jax.sweep run --config configs/sweeps/baseline.py:tiny --workdir runs/baseline_tiny
python -m convnext_jax.sweep run --config configs/sweeps/baseline.py:folder:/data/x --workdir runs/baseline --gpus 0,1
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    return with_sweep(config, space="", seeds=3 if tiny else 5)
