"""SLURM's time-limit warning (SIGUSR1) arriving while JAX starts or the step compiles is held, not
fatal: the step loop sees it at once and stops after its first step."""

import os
import signal

from convnext_jax.train.preemption import PreemptionWatch, hold_early_warnings


def test_a_warning_before_the_step_loop_stops_it_after_the_first_step():
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        hold_early_warnings()
        os.kill(os.getpid(), signal.SIGUSR1)  # the default action would end this process
        with PreemptionWatch() as watch:
            assert watch.should_stop(1) and watch.received == "SIGUSR1"
        with PreemptionWatch() as watch:  # held once: a later run in the same process is not stopped
            assert not watch.should_stop(1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
