"""Copy a container's output to the caller's stdout/stderr (and its json-file log) while forwarding
signals, until the process exits. Used by foreground ``run``, ``start -a`` and ``exec``.

The process is watched through a pidfd (readable when it exits), so no SIGCHLD handler races the
copy loop; after the exit the remaining output is drained without blocking.
"""
from __future__ import annotations

import _signal as signal  # not `signal`: its enums import enum (~3 ms); same functions, int handlers
import errno
import os
import select  # not `selectors`: it imports math, collections (~3-5 ms) for one poll loop

from pallet.engine.stdio import Stdio, copy_winsize
from pallet.engine.units import FORWARDED_SIGNALS

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from collections.abc import Callable
    from typing import Any

FORWARDED = FORWARDED_SIGNALS


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        data = data[n:]


class Forwarder:
    """Install handlers sending the signals a foreground ``pallet run`` gets to ``kill``; restore on exit."""

    def __init__(self, kill: Callable[[int], None], *, winch: Callable[[], None] | None = None) -> None:
        self.kill = kill
        self.winch = winch
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> Forwarder:
        for s in FORWARDED:
            self.saved[s] = signal.signal(s, self._handle)
        winch = self.winch
        if winch is not None:
            self.saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: winch())
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        try:
            self.kill(signum)
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        for s, h in self.saved.items():
            signal.signal(s, h)


def pump(pid: int, io: Stdio, *, log: Any = None, stdin_fd: int | None = None,
         out_fd: int = 1, err_fd: int = 2, reap: bool = True,
         on_exit: Callable[[], None] | None = None, pidfd: int | None = None) -> int:
    """Copy until ``pid`` exits; returns its docker exit code (128+N when killed by signal N).
    ``stdin_fd``: copied into the pty master / stdin pipe (``-i`` with a tty, or attach).
    ``pidfd``: the process's pidfd when it is not our child (a served run; closed here)."""
    poller = select.poll()
    kinds: dict[int, str] = {}

    def register(fd: int, kind: str) -> None:
        poller.register(fd, select.POLLIN)
        kinds[fd] = kind

    def unregister(fd: int) -> None:
        poller.unregister(fd)
        del kinds[fd]

    if pidfd is None:
        pidfd = os.pidfd_open(pid)
    register(pidfd, "exit")
    streams: dict[int, tuple[str, int]] = {}
    if io.tty:
        streams[io.master] = ("stdout", out_fd)
    else:
        streams[io.out_r] = ("stdout", out_fd)
        streams[io.err_r] = ("stderr", err_fd)
    for fd in streams:
        register(fd, "out")
    in_target = io.master if io.tty else io.in_w
    if stdin_fd is not None and in_target >= 0:
        register(stdin_fd, "in")
    exited = False
    try:
        while streams and not exited:
            for fd, _ev in poller.poll():  # POLLIN, POLLHUP, POLLERR: all mean "read it" here
                kind = kinds.get(fd)
                if kind is None:
                    continue
                if kind == "exit":
                    exited = True
                elif kind == "in":
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        unregister(fd)
                        if not io.tty and io.in_w >= 0:
                            os.close(io.in_w)
                            io.in_w = -1
                    else:
                        _write_all(in_target, data)
                elif not _copy(fd, streams, log):
                    unregister(fd)
                    del streams[fd]
        # the process is gone: drain what is left without waiting for other holders of the pipes
        for fd in list(streams):
            os.set_blocking(fd, False)
            while _copy(fd, streams, log):
                pass
    finally:
        os.close(pidfd)
        if log is not None:
            log.flush()
    if on_exit is not None:
        on_exit()
    if not reap:
        return 0
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return exit_code(status)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255


def _copy(fd: int, streams: dict[int, tuple[str, int]], log: Any) -> bool:
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno == errno.EIO:  # pty: every slave closed
            return False
        raise
    if not data:
        return False
    name, out = streams[fd]
    if out >= 0:
        _write_all(out, data)
    if log is not None:
        log.write(name, data)
    return True


def winch_to(master: int) -> Callable[[], None]:
    return lambda: copy_winsize(0 if os.isatty(0) else 1, master)
