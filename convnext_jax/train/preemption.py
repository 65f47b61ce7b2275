"""Preemption: SIGTERM (a cluster or spot VM reclaiming the machine), SIGUSR1 (SLURM's warning
signal, `#SBATCH --signal=USR1@120`) or SIGINT (Ctrl-C) -> every process stops after the same step,
the run saves a checkpoint there (data iterator included) and exits with EXIT_PREEMPTED (130 for
Ctrl-C, as a shell reports it); running the same command again resumes from it exactly. A second
signal while the checkpoint is being saved does not interrupt the save: it says so and waits.

One process: a Python signal handler sets a flag checked after every step. Several processes:
JAX's preemption sync manager (started by `jax.distributed.initialize`) catches SIGTERM and
`reached_preemption_sync_point` makes all processes agree on the step; SIGUSR1 is turned into
SIGTERM so that it takes the same path (so is SIGINT).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils

EXIT_PREEMPTED = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run the same command again
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def exit_code_of(signal_name: str) -> int:
    """The exit status of a run stopped by `signal_name` after saving."""
    return EXIT_INTERRUPTED if signal_name == "SIGINT" else EXIT_PREEMPTED


class Preempted(Exception):
    """The run stopped on a preemption signal after saving a checkpoint at `step`."""

    def __init__(self, step: int, signal_name: str):
        what = "interrupted (Ctrl-C)" if signal_name == "SIGINT" else f"preempted ({signal_name})"
        super().__init__(
            f"{what}: saved a checkpoint at step {step}; run the same command again to resume "
            f"(exit code {exit_code_of(signal_name)})"
        )
        self.step, self.signal_name, self.exit_code = step, signal_name, exit_code_of(signal_name)


_EARLY: list[str] = []  # warning signals that arrived before the step loop watched for them


def hold_early_warnings() -> None:
    """From the start of a command: a SIGUSR1 (SLURM's time-limit warning) that arrives while JAX
    starts or the step compiles is remembered, not fatal (its default action kills the process and
    the job would end without a checkpoint or a requeue); the step loop then stops after its first
    step and saves."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: _EARLY.append(signal.Signals(signum).name))


class PreemptionWatch:
    """Install with `with PreemptionWatch() as watch:`; `watch.should_stop(step)` after each step."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._multi = jax.process_count() > 1

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be installed from the main thread (e.g. sweep workers)
        for sig in SIGNALS:
            if self._multi and sig == signal.SIGTERM:
                continue  # JAX's preemption notifier owns SIGTERM
            self._previous[sig] = signal.signal(sig, self._handle)
        if _EARLY:
            self._handle(getattr(signal, _EARLY.pop()), None)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # already stopping: the checkpoint is being written
            print(
                f"{signal.Signals(signum).name} again: still saving the checkpoint; waiting for the save to finish "
                "so that nothing is lost",
                file=sys.stderr,
                flush=True,
            )
            return
        self.received = signal.Signals(signum).name
        if self._multi:  # hand over to JAX's notifier, which all processes agree through
            os.kill(os.getpid(), signal.SIGTERM)

    def should_stop(self, step: int) -> bool:
        """True on every process at the same step once any process was signalled."""
        if self._multi:
            if multihost_utils.reached_preemption_sync_point(step):
                self.received = self.received or "SIGTERM"
                return True
            return False
        return self.received is not None
