"""Failed-authentication throttling per client (IP address).

After `max_failures` refused authentications from one client within `window_seconds`, the
client is refused outright (429) until the oldest of those failures leaves the window, whatever
token it sends: guessing tokens is slowed to `max_failures` per window. Pure: the caller passes
the time (monotonic seconds). Kept in memory per process: with several gateway replicas each
counts on its own, and a restart forgets.
"""

from __future__ import annotations

import math
from collections import deque


class FailureThrottle:
    def __init__(self, max_failures: int, window_seconds: float, max_clients: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float) -> int | None:
        """Seconds until `client` may try again; None when it may now."""
        failures = self._failures.get(client)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window - now
        return math.ceil(wait) if wait > 0 else None

    def failed(self, client: str, now: float) -> None:
        """Count a refused authentication of `client`."""
        failures = self._failures.get(client)
        if failures is None:
            if len(self._failures) >= self.max_clients:
                self._forget_before(now - self.window)
            failures = self._failures[client] = deque(maxlen=self.max_failures)
        failures.append(now)

    def _forget_before(self, cutoff: float) -> None:
        """Drop the clients whose failures all left the window (memory stays bounded)."""
        for client in [c for c, f in self._failures.items() if f[-1] < cutoff]:
            del self._failures[client]
