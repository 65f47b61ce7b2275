"""The surge fit recovers the peak batch size; the optimal LR per batch is refined in log space."""

import numpy as np
import pytest

from convnext_jax.sweep.surge import fit_surge, optimal_lr, surge_curve


def test_surge_fit_recovers_the_peak():
    batches = np.array([32, 64, 128, 256, 512, 1024.0])
    fit = fit_surge(batches, surge_curve(batches, 2e-3, 200.0) * np.exp([0.02, -0.03, 0.01, 0.0, -0.02, 0.03]))
    assert fit["inside"] and 150 < fit["peak_batch"] < 270 and 1.6e-3 < fit["lr_max"] < 2.5e-3
    rising = fit_surge(batches[:3], surge_curve(batches[:3], 1e-3, 5000.0))
    assert not rising["inside"]  # the optimum keeps rising: B* is only bounded from below
    assert fit_surge([32, 64], [1e-3, 2e-3]) is None
    assert optimal_lr([1e-4, 1e-3, 1e-2], [0.5, 0.8, 0.5]) == pytest.approx(1e-3, rel=1e-6)  # symmetric
    assert optimal_lr([1e-4, 1e-3, 1e-2], [0.1, 0.2, 0.9]) == pytest.approx(1e-2)  # at the edge
