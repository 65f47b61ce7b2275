"""Study reports: the optimal LR per batch size and B* from LR x batch points."""

import numpy as np

from convnext_jax.sweep.surge import surge_curve


def test_report_estimates_the_surge_peak_from_lr_batch_points(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convnext_jax.sweep.report import _lr_batch_plots

    lrs = np.exp(np.linspace(np.log(1e-4), np.log(1e-1), 13))
    points = []
    for batch in (32, 64, 128, 256, 512, 1024):
        best = surge_curve(np.array([batch], float), 3e-3, 128.0)[0]
        for lr in lrs:  # accuracy peaks at the surge curve's LR, quadratic in log LR
            points.append({"params": {"batch_size": batch, "optim.lr": float(lr)},
                           "best_val_top1": (0.9 - 0.05 * (np.log(lr) - np.log(best)) ** 2, 0.0)})
    result = _lr_batch_plots(plt, points, str(tmp_path))
    assert result["lr_at_edge"] == [] and 100 < result["surge"]["peak_batch"] < 165
    assert (tmp_path / "optimal_lr_vs_batch.png").exists() and (tmp_path / "accuracy_vs_lr_by_batch.png").exists()
    edge = [p for p in points if p["params"]["optim.lr"] <= lrs[3]]  # every optimum above the swept range
    result = _lr_batch_plots(plt, edge, str(tmp_path))
    assert result["surge"] is None and "widen optim.lr" in result["surge_note"]
