"""What the load benchmarks watch while they run: a process's CPU time, memory and threads
(from /proc, Linux only), and the latency of one web request sampled at a steady pace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its descendants (gunicorn's workers), all
    their threads, so far."""
    total = 0.0
    for one in [pid, *descendants(pid)]:
        try:
            stat = Path(f"/proc/{one}/stat").read_text()
        except FileNotFoundError:
            continue  # a child that exited meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: 14, 15
    return total


def _status(pid: int) -> dict[str, str]:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def rss_mib(pid: int) -> float:
    """Resident memory (VmRSS) of the process; 0 if it is gone."""
    try:
        return int(_status(pid).get("VmRSS", "0 kB").split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def tree_rss_mib(pid: int) -> float:
    """Resident memory of the process and its descendants."""
    return rss_mib(pid) + sum(rss_mib(child) for child in descendants(pid))


def thread_count(pid: int) -> int:
    """Threads of the process and its descendants."""
    total = 0
    for one in [pid, *descendants(pid)]:
        try:
            total += int(_status(one).get("Threads", "0"))
        except FileNotFoundError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    """Child processes, their children and so on (a scan of /proc: no children files here)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@dataclass(frozen=True)
class MemorySample:
    at: float  # perf_counter()
    rss_mib: float  # the process and its descendants
    threads: int  # of the process and its descendants


class MemoryWatch:
    """Samples a process's resident memory (with its descendants') every ``every`` seconds
    in a thread, from ``start()`` until ``stop()``."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"memory-{pid}", daemon=True)

    def start(self) -> MemoryWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> MemorySample:
        return MemorySample(time.perf_counter(), tree_rss_mib(self.pid), thread_count(self.pid))

    def peak(self, start: float = 0.0, end: float = float("inf")) -> float:
        within = [s.rss_mib for s in self.samples if start <= s.at <= end]
        return max(within, default=0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except (OSError, ValueError):
                return  # the process is gone; the benchmark notices on its own
            self._stop.wait(self.every)


@dataclass(frozen=True)
class Latency:
    at: float  # perf_counter() when the request was sent
    ms: float
    ok: bool


class LatencyProbe:
    """GETs one path every ``every`` seconds (each after the previous answered) in a thread
    and keeps each request's latency, to compare windows of the run (idle, under load)."""

    def __init__(
        self,
        client: httpx.Client,
        path: str,
        every: float = 0.1,
        ok: Callable[[int], bool] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.every = every
        self.ok = ok or (lambda status: status == 200)
        self.samples: list[Latency] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)

    def start(self) -> LatencyProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)

    def window(self, start: float, end: float) -> list[Latency]:
        return [s for s in self.samples if start <= s.at <= end]

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.perf_counter()
            try:
                ok = self.ok(self.client.get(self.path).status_code)
            except httpx.HTTPError:
                ok = False
            self.samples.append(Latency(sent, (time.perf_counter() - sent) * 1000, ok))
            self._stop.wait(max(0.0, self.every - (time.perf_counter() - sent)))


def milliseconds(samples: Sequence[Latency]) -> list[float]:
    return [s.ms for s in samples if s.ok]
