"""What the benchmarks share: running a child process with its resource use, the job's
command line, the local server and a few figures.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "bench-api-key"
PROJECT = "kam-local"

# Children still running; stopped at exit, so that none outlives an interrupted run
# (each runs in a session of its own, out of reach of the terminal's Ctrl-C).
_LIVE: set[Child] = set()


def _stop_live_children() -> None:
    for child in list(_LIVE):
        child.stop(grace=5.0)


atexit.register(_stop_live_children)


def exit_on_sigterm() -> None:
    """Turns SIGTERM into SystemExit, so that cleanup and atexit run."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


@dataclasses.dataclass
class ProcessResult:
    """A finished child process.

    Attributes:
      returncode: its exit status (negative: killed by that signal).
      started, ended: ``time.time()`` at spawn and at exit.
      cpu_secs: user plus system CPU time of the child (and its waited-for children).
      max_rss_mib: its peak resident memory.
      stdout, stderr: what it wrote.
      timed_out: it was killed for running past its time limit.
    """

    returncode: int
    started: float
    ended: float
    cpu_secs: float
    max_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def wall_secs(self) -> float:
        return self.ended - self.started

    def check(self, what: str) -> ProcessResult:
        if self.returncode != 0 or self.timed_out:
            tail = "\n".join(self.stderr.splitlines()[-30:])
            raise RuntimeError(
                f"{what} failed (exit {self.returncode}, timed out: {self.timed_out}):"
                f"\n{tail}"
            )
        return self


class Child:
    """A child process in its own process group, reaped with its resource use."""

    def __init__(
        self, command: Sequence[str], env: dict | None = None, cwd: Path = ROOT
    ) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")
        self._err = tempfile.TemporaryFile(mode="w+")
        environ = dict(os.environ)
        environ.update(env or {})
        self.started = time.time()
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=environ,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self._result: ProcessResult | None = None
        _LIVE.add(self)

    def poll(self) -> ProcessResult | None:
        """The result if the child has ended (reaping it), else None."""
        if self._result is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            self._finish(status, usage)
        return self._result

    def wait(self, timeout: float) -> ProcessResult:
        """Waits up to ``timeout`` s, then stops the child (SIGTERM, then SIGKILL)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.poll()
            if result is not None:
                return result
            time.sleep(0.05)
        self.stop()
        assert self._result is not None
        self._result.timed_out = True
        return self._result

    def stop(self, grace: float = 10.0) -> ProcessResult:
        """Stops the child's process group: SIGTERM, then SIGKILL after ``grace``."""
        if self.poll() is not None:
            return self._result
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.poll() is not None:
                    return self._result
                time.sleep(0.05)
        _, status, usage = os.wait4(self.pid, 0)
        self._finish(status, usage)
        return self._result

    def _finish(self, status: int, usage: object) -> None:
        ended = time.time()
        _LIVE.discard(self)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        # The group may hold helpers the child started; none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._out.seek(0)
        self._err.seek(0)
        self._result = ProcessResult(
            returncode=self.process.returncode,
            started=self.started,
            ended=ended,
            cpu_secs=usage.ru_utime + usage.ru_stime,
            max_rss_mib=usage.ru_maxrss / 1024,
            stdout=self._out.read(),
            stderr=self._err.read(),
        )
        self._out.close()
        self._err.close()


def run(
    command: Sequence[str], timeout: float, env: dict | None = None
) -> ProcessResult:
    return Child(command, env).wait(timeout)


def job_command(*args: str, module: str = "pipeline") -> list[str]:
    return [PYTHON, "-m", module, *args]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def read_dead_letters(prefix: Path) -> list[dict]:
    records = []
    for path in sorted(prefix.parent.glob(prefix.name + "*")):
        with open(path, encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def machine_note() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
