"""Study reports: statistics that say how many seeds they rest on, flags for partial, pruned and
edge points, a cautious headline, the surge estimate, and HTML that is rendered, not markdown."""

import numpy as np

from configs.common import tiny_study_base
from convnext_jax.sweep import with_sweep
from convnext_jax.sweep.report import _html, _lr_batch_plots, aggregate, fmt, headline
from convnext_jax.sweep.spec import split_config
from convnext_jax.sweep.surge import surge_curve


def _spec(space="optim.lr: grid(1e-4, 1e-3, 1e-2)", seeds=2):
    return split_config(with_sweep(tiny_study_base(), space=space, seeds=seeds))[0]


def _row(lr, seed, value, state="COMPLETE", **extra):
    return {
        "params": {"optim.lr": lr},
        "seed": seed,
        "state": state,
        "number": int(lr * 1e5) + seed,
        "value": value if state == "COMPLETE" else None,
        "best_val_top1": value,
        **extra,
    }


def test_points_say_how_many_seeds_they_rest_on_and_flag_the_rest():
    rows = [
        _row(1e-4, 0, 0.50),
        _row(1e-4, 1, 0.52),
        _row(1e-3, 0, 0.80),
        _row(1e-3, 1, 0.70),
        _row(1e-2, 0, 0.95),
        _row(1e-2, 1, None, state="PRUNED"),
    ]
    points = aggregate(rows, _spec())
    by_lr = {p["params"]["optim.lr"]: p for p in points}
    assert by_lr[1e-2]["complete"] == 1 and by_lr[1e-2]["flags"][:2] == ["1/2 seeds", "1 pruned"]
    assert fmt(by_lr[1e-2]["value"]) == "0.9500 (1 seed)"  # no '± 0.0000' for one seed
    assert fmt(by_lr[1e-3]["value"]) == "0.7500 ± 0.0707 (2 seeds)"
    assert "best at the highest optim.lr" in by_lr[1e-2]["flags"]  # the best of the grid is at its edge
    text, warnings = headline(points, _spec())
    assert text.startswith("Best point: optim.lr=0.001") and "0.7500 ± 0.0707 (2 seeds)" in text
    assert any("optim.lr=0.01 scored higher" in w and "only 1 of 2 seeds" in w for w in warnings)


def test_headline_warns_about_single_seeds_and_edges():
    rows = [_row(1e-4, 0, 0.5), _row(1e-3, 0, 0.6), _row(1e-2, 0, 0.9)]
    text, warnings = headline(aggregate(rows, _spec(seeds=1)), _spec(seeds=1))
    assert "optim.lr=0.01" in text
    assert any("one seed per point" in w for w in warnings)
    assert any("highest optim.lr swept (0.01)" in w and "widen the range" in w for w in warnings)


def test_html_is_rendered():
    page = _html(
        "t",
        [
            ("h1", "Study `lr`"),
            ("p", "Objective: **best_val_top1**"),
            ("warnings", ["careful"]),
            ("table", ["a", "b"], [["1", "<2>"]]),
            ("img", "x.png"),
        ],
    )
    assert "<h1>Study <code>lr</code></h1>" in page and "<strong>best_val_top1</strong>" in page
    assert "**" not in page and "&lt;2&gt;" in page and "<img src='x.png'" in page and "Caution" in page


def _points(batches, lrs, peak_lr, seeds=2):
    points = []
    for batch in batches:
        best = peak_lr(batch)
        for lr in lrs:  # accuracy peaks at the surge curve's LR, quadratic in log LR
            value = 0.9 - 0.05 * (np.log(lr) - np.log(best)) ** 2
            points.append(
                {
                    "params": {"batch_size": batch, "optim.lr": float(lr)},
                    "complete": seeds,
                    "seeds": seeds,
                    "value": (value, 0.0, seeds),
                    "edges": [],
                }
            )
    return points


def test_report_estimates_the_surge_peak_from_lr_batch_points(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = np.exp(np.linspace(np.log(1e-4), np.log(1e-1), 13))
    points = _points((32, 64, 128, 256, 512, 1024), lrs, lambda b: surge_curve(np.array([b], float), 3e-3, 128.0)[0])
    spec = _spec("batch_size: grid(32, 64); optim.lr: grid(1e-3, 1e-2)")
    result = _lr_batch_plots(plt, points, str(tmp_path), spec)
    assert result["lr_at_edge"] == [] and 100 < result["surge"]["peak_batch"] < 165
    assert (tmp_path / "optimal_lr_vs_batch.png").exists() and (tmp_path / "objective_vs_lr_by_batch.png").exists()
    edge = [p for p in points if p["params"]["optim.lr"] <= lrs[3]]  # every optimum above the swept range
    result = _lr_batch_plots(plt, edge, str(tmp_path), spec)
    assert result["surge"] is None and "widen optim.lr" in result["surge_note"]
    for p in points:  # a loss to minimise: the same optimum
        p["value"] = (1.0 - p["value"][0], 0.0, 2)
    loss_spec = split_config(
        with_sweep(
            tiny_study_base(), space="batch_size: grid(32, 64); optim.lr: grid(1e-3, 1e-2)", objective="final_val_loss"
        )
    )[0]
    result = _lr_batch_plots(plt, points, str(tmp_path), loss_spec)
    assert 100 < result["surge"]["peak_batch"] < 165
