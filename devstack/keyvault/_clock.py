"""The emulator's adjustable clock: real time plus an offset that tests and the demo can move."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["EmulatorClock"]


class EmulatorClock:
    """Real time plus an adjustable offset; calling it returns Unix seconds (it satisfies ``Clock``).

    Every change notifies the listeners synchronously, in the thread that made the change, so that a test
    that advances the clock sees the events the change makes due before ``advance`` returns.
    """

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset = 0.0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._wall() + self._offset

    def now(self) -> float:
        """Return the emulator's current time as Unix seconds."""
        return self()

    @property
    def offset(self) -> float:
        """Seconds the clock is ahead of real time (negative when behind)."""
        return self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (backward if negative) and return the new time.

        Raises:
            Whatever a listener raises.
        """
        with self._lock:
            self._offset += seconds
        self._notify()
        return self()

    def set(self, unix: float) -> float:
        """Set the clock to the Unix time ``unix`` and return it.

        Raises:
            Whatever a listener raises.
        """
        with self._lock:
            self._offset = unix - self._wall()
        self._notify()
        return self()

    def reset(self) -> float:
        """Return the clock to real time.

        Raises:
            Whatever a listener raises.
        """
        with self._lock:
            self._offset = 0.0
        self._notify()
        return self()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of the clock."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
