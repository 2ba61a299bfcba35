"""Counters, rate-limited warnings and latency statistics for the node's /diagnostics.

Kept apart from the node so the bookkeeping is small and testable: every problem has a counter key,
the first occurrence of a key is logged at once and later ones at most every ``period_s`` with a
"(N more since)" tail, so a detector spewing garbage at 30 Hz cannot flood the log.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

# Counter names that mean "an input was rejected or repaired" and "a frame was lost to a fault".
PROBLEM_PREFIXES = ("bad_", "rejected_")
FAILURE_COUNTERS = ("inference_failed", "frames_failed")


class RateLimitedWarnings:
    """Per-key warning throttle; ``emit`` is the logger function (e.g. ``node.get_logger().warning``)."""

    def __init__(self, emit: Callable[[str], None], period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.period_s = period_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warn(self, key: str, message: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._suppressed[key] += 1
            return False
        suppressed = self._suppressed.pop(key, 0)
        tail = f" ({suppressed} more since the last report)" if suppressed else ""
        self.emit(f"[{key}] {message}{tail}")
        self._last[key] = now
        return True


class StageTimes:
    """Rolling per-stage latencies (ms) over the last ``window`` frames: median and p99."""

    def __init__(self, window: int = 300) -> None:
        self._samples: dict[str, deque[float]] = {}
        self.window = window

    def add(self, stage: str, ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self.window)).append(ms)

    def summary(self) -> dict[str, tuple[float, float]]:
        return {stage: (float(np.median(s)), float(np.percentile(s, 99))) for stage, s in self._samples.items() if s}


class NodeHealth:
    """Thread-safe counters + stage timings, rendered as one DiagnosticStatus."""

    def __init__(self, name: str, hardware_id: str) -> None:
        self.name = name
        self.hardware_id = hardware_id
        self.counters: Counter[str] = Counter()
        self.times = StageTimes()
        self.info: dict[str, str] = {}
        self._lock = threading.Lock()
        self._reported_problems = 0
        self._reported_failures = 0

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def get(self, key: str) -> int:
        with self._lock:
            return self.counters[key]

    def add_times(self, times_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, ms in times_ms.items():
                self.times.add(stage, ms)

    def diagnostics(self, header: Header, extra: dict[str, str] | None = None) -> DiagnosticArray:
        with self._lock:
            counters = dict(self.counters)
            summary = self.times.summary()
        values = dict(self.info)
        values.update(extra or {})
        for stage, (median, p99) in sorted(summary.items()):
            values[f"latency_{stage}_ms_median"] = f"{median:.2f}"
            values[f"latency_{stage}_ms_p99"] = f"{p99:.2f}"
        for key, n in sorted(counters.items()):
            values[f"count_{key}"] = str(n)
        processed = counters.get("frames_published", 0)
        problems = sum(n for k, n in counters.items() if k.startswith(PROBLEM_PREFIXES))
        failures = sum(n for k, n in counters.items() if k in FAILURE_COUNTERS)
        # the level describes the last period: one bad frame an hour ago must not keep the node WARN forever
        new_problems, self._reported_problems = problems - self._reported_problems, problems
        new_failures, self._reported_failures = failures - self._reported_failures, failures
        if new_failures:
            level, message = DiagnosticStatus.ERROR, f"{new_failures} frames failed in the backend since the last report"
        elif processed == 0:
            level, message = DiagnosticStatus.WARN, "no frame lifted yet (waiting for images and keypoints)"
        elif new_problems:
            level, message = DiagnosticStatus.WARN, f"running; {new_problems} inputs rejected since the last report"
        else:
            level, message = DiagnosticStatus.OK, "running"
        status = DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.hardware_id,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        return DiagnosticArray(header=header, status=[status])
