"""cgroup v1's threadgroup lock, kept warm by the monitor while it starts containers.

The first ``cgroup.procs`` write after an idle moment waits for an RCU grace period (8-16 ms
here: the kernel's cgroup_threadgroup_rwsem leaving its reader-favouring state), one after a
recent write does not. For ``WARM`` s after serving a request the monitor's loop writes its own
pid into its own pids cgroup (a move to where it is) every ``PERIOD`` s, so the next start's or
exec's attach finds the lock warm: what the kernel's ``favordynmods`` cgroup option does for
good, only while pallet is starting containers (forks and exits elsewhere take the rwsem's
slower path meanwhile). ``PALLET_CGROUP_KEEPWARM=0`` turns it off.
"""
from __future__ import annotations

import os
import time

WARM, PERIOD = 2.0, 0.006


class WarmLock:
    def __init__(self, enabled: bool) -> None:
        self.fd, self.last, self.until = -1, 0.0, 0.0
        if not enabled or os.environ.get("PALLET_CGROUP_KEEPWARM") == "0":
            return
        from pallet.runtime.linux.cgroupfs import own_procs

        try:
            path = own_procs(("pids",))
            self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC) if path else -1
        except OSError:
            self.fd = -1

    def extend(self) -> None:
        """A request was served: keep the lock warm for the next ``WARM`` s."""
        if self.fd >= 0:
            self.until = time.monotonic() + WARM

    def tick(self, now: float, timeout: float) -> float:
        """Write when due; the loop's select timeout, shortened while warm."""
        if self.fd < 0 or now >= self.until:
            return timeout
        if now - self.last >= PERIOD:
            self.last = now
            try:
                os.write(self.fd, b"0")
            except OSError:
                self.close()
                return timeout
        return min(timeout, PERIOD)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
