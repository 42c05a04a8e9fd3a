"""The peak resident memory of processes while a scenario attacks them."""

from __future__ import annotations

import threading

import psutil


class RssPeak:
    """Samples the resident memory of processes in a thread; keeps the peak of each."""

    def __init__(self, pids: dict[str, int | None], every: float = 0.1) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self.peak_mb: dict[str, float] = dict.fromkeys(self.procs, 0.0)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peak", daemon=True)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def now_mb(self, name: str) -> float:
        try:
            return float(self.procs[name].memory_info().rss) / 1e6
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.procs:
                self.peak_mb[name] = max(self.peak_mb[name], self.now_mb(name))
            self._stop.wait(self.every)
