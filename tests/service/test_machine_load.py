"""The machine's load as the evaluator of `citygate service run` sees it: the CPU time of the
other processes, not its own, as a share of all the cores (pure logic: counters injected)."""

from __future__ import annotations

import pytest

from citygate.service.machine_load import SAMPLE_S, MachineLoad


class Counters:
    """A fake clock and CPU counters: ``run(dt, others=..., own=...)`` advances them as if the
    other processes used ``others`` cores and this process ``own`` cores for ``dt`` seconds."""

    def __init__(self) -> None:
        self.now = 100.0
        self.busy = 5_000.0
        self.own = 10.0
        self.reads = 0

    def busy_s(self) -> float:
        self.reads += 1
        return self.busy

    def run(self, dt: float, *, others: float = 0.0, own: float = 0.0) -> None:
        self.now += dt
        self.own += own * dt
        self.busy += (others + own) * dt

    def load(self, full_load: float = 0.5, min_share: float = 0.05) -> MachineLoad:
        return MachineLoad(
            full_load=full_load,
            min_share=min_share,
            busy_s=self.busy_s,
            own_s=lambda: self.own,
            cpus=4,
            clock=lambda: self.now,
        )


def settle(c: Counters, m: MachineLoad, *, others: float = 0.0, own: float = 0.0) -> float:
    for _ in range(50):  # 10 s: ten of the average's time constants
        c.run(SAMPLE_S, others=others, own=own)
        m.others()
    return m.evaluator_share()


def test_an_idle_machine_leaves_the_evaluator_all_of_the_time() -> None:
    c = Counters()
    m = c.load()
    assert settle(c, m) == 1.0


def test_the_evaluators_own_work_does_not_make_it_yield() -> None:
    """Its own process on every core: still nobody else to make room for."""
    c = Counters()
    m = c.load()
    assert settle(c, m, own=4.0) == pytest.approx(1.0, abs=1e-9)


def test_others_at_full_load_hold_the_evaluator_to_its_minimum_share() -> None:
    c = Counters()
    m = c.load(full_load=0.5, min_share=0.05)
    assert settle(c, m, others=2.0) == pytest.approx(0.05)  # two of four cores: 0.5 of the machine
    assert settle(c, m, others=4.0) == pytest.approx(0.05)


def test_the_share_falls_linearly_with_the_others_load() -> None:
    c = Counters()
    m = c.load(full_load=0.5, min_share=0.05)
    assert settle(c, m, others=1.0) == pytest.approx(0.5, abs=0.01)  # a quarter of the machine
    assert m.others() == pytest.approx(0.25, abs=0.005)


def test_the_share_comes_back_once_the_others_stop() -> None:
    c = Counters()
    m = c.load()
    settle(c, m, others=4.0)
    assert settle(c, m) == pytest.approx(1.0, abs=0.01)


def test_the_counters_are_read_at_most_once_per_sample_interval() -> None:
    c = Counters()
    m = c.load()
    reads = c.reads
    for _ in range(99):
        c.run(SAMPLE_S / 100, others=4.0)
        m.evaluator_share()
    assert c.reads == reads  # less than an interval since the start
    c.run(SAMPLE_S / 50, others=4.0)
    m.evaluator_share()
    assert c.reads - reads == 1
