"""A backend that survives its own failures: after N consecutive errors it switches to the next one.

A GPU backend can start failing mid-run (CUDA out of memory after another process grew, a driver
reset, an Xid error) while the CPU is still fine. :class:`FallbackBackend` wraps the running backend:

- every call that raises is re-raised as :class:`InferenceFailed` (the caller drops that frame and
  counts it: a frame is never published from a half-failed call);
- after ``max_consecutive_failures`` failures in a row it creates the next backend of ``fallbacks``
  (lazily: a CPU fallback costs nothing until it is needed) and uses that from the next call on;
  a fallback that cannot start is skipped with its reason; a success resets the count;
- when no fallback is left it keeps the current backend and keeps trying: transient faults heal.

The switch happens inside :meth:`infer`, on the caller's thread, so a slow fallback start delays
only the frames that would have failed anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lbi_ros.runtime.backend import InferenceBackend
from lbi_ros.runtime.io_spec import IOSpec

log = logging.getLogger(__name__)


class InferenceFailed(RuntimeError):
    """The backend raised on this batch; the frame is dropped. ``backend`` names the one that failed."""

    def __init__(self, backend: str, cause: BaseException, consecutive: int) -> None:
        super().__init__(f"{backend} raised {type(cause).__name__}: {cause}")
        self.backend = backend
        self.consecutive = consecutive


@dataclass(frozen=True)
class Switch:
    """One fallback event, for logs and diagnostics."""

    from_backend: str
    to_backend: str | None
    """None: no fallback could start; the old backend stays."""
    reason: str


class FallbackBackend:
    """An :class:`InferenceBackend` over a primary and an ordered list of lazily created fallbacks."""

    def __init__(self, primary: InferenceBackend,
                 fallbacks: Sequence[tuple[str, Callable[[], InferenceBackend]]] = (),
                 max_consecutive_failures: int = 3,
                 on_switch: Callable[[Switch], None] | None = None) -> None:
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be >= 1, got {max_consecutive_failures}")
        self.current = primary
        self.pending = list(fallbacks)
        self.max_consecutive_failures = max_consecutive_failures
        self.on_switch = on_switch
        self.consecutive_failures = 0
        self.total_failures = 0
        self.switches: list[Switch] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.current.name

    @property
    def io_spec(self) -> IOSpec:
        return self.current.io_spec

    @property
    def description(self) -> str:
        return getattr(self.current, "description", self.current.name)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            backend = self.current
            try:
                outputs = backend.infer(feeds)
            except Exception as exc:  # noqa: BLE001 - any backend error: drop the frame, maybe fall back
                self.consecutive_failures += 1
                self.total_failures += 1
                failed = InferenceFailed(backend.name, exc, self.consecutive_failures)
                if self.consecutive_failures >= self.max_consecutive_failures and self.pending:
                    self._switch(f"{self.consecutive_failures} consecutive failures, last: {failed}")
                raise failed from exc
            self.consecutive_failures = 0
            return outputs

    def _switch(self, reason: str) -> None:
        old = self.current
        while self.pending:
            name, create = self.pending.pop(0)
            try:
                candidate = create()
                if candidate.io_spec.input_names != old.io_spec.input_names or \
                        candidate.io_spec.output_names != old.io_spec.output_names:
                    raise ValueError(f"its I/O {candidate.io_spec.input_names} -> {candidate.io_spec.output_names} "
                                     f"differs from {old.io_spec.input_names} -> {old.io_spec.output_names}")
            except Exception as exc:  # noqa: BLE001 - a fallback that cannot start is skipped, not fatal
                log.error("fallback backend %s cannot start (%s: %s); trying the next", name, type(exc).__name__, exc)
                continue
            self.current = candidate
            self.consecutive_failures = 0
            self._record(Switch(old.name, candidate.name, reason))
            return
        self._record(Switch(old.name, None, reason + "; no fallback backend could start"))

    def _record(self, switch: Switch) -> None:
        self.switches.append(switch)
        log.warning("backend %s -> %s (%s)", switch.from_backend, switch.to_backend or "(unchanged)", switch.reason)
        if self.on_switch is not None:
            self.on_switch(switch)
