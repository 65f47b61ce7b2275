"""Console progress: a tqdm bar (step, ETA, img/s, loss) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class Progress:
    """Only process 0 reports. `advance` per step; `report` at log points; `message` for epoch lines."""

    def __init__(self, total: int, start: int, *, enabled: bool = True, bar: bool | None = None):
        self.enabled = enabled
        self.total = total
        use_bar = enabled and (sys.stderr.isatty() if bar is None else bar)
        self.bar = (
            tqdm(
                total=total,
                initial=start,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=0.5,
                smoothing=0.1,
            )
            if use_bar
            else None
        )

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def report(self, step: int, values: dict[str, Any], *, eta_s: float) -> None:
        """A log point: the train loss, throughput (once measured) and loss-scale state."""
        if not self.enabled:
            return
        fields = {"loss": f"{values['train_loss']:.4f}"}
        if "img_per_s" in values:
            fields["img/s"] = f"{values['img_per_s']:.0f}"
            fields["data"] = f"{100 * values['data_wait_fraction']:.0f}%"
        for key in ("loss_scale", "skipped_steps"):
            if key in values:
                fields[key] = f"{values[key]:.4g}" if isinstance(values[key], float) else str(values[key])
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
        else:
            print(
                f"step {step}/{self.total} "
                + " ".join(f"{k} {v}" for k, v in fields.items())
                + (f" ETA {eta_s:.0f}s" if "img/s" in fields else ""),
                flush=True,
            )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
