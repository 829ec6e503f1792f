"""The container's stdio, owned by its waiter (a foreground ``pallet run``/``exec``, or the monitor).

``Stdio.make`` builds what the runtime dups onto fds 0/1/2: a pty (``tty``), or pipes for
stdout/stderr plus stdin from the caller's fd 0 (``-i``), a pipe (detached ``-i``), or /dev/null.
After the runtime started the process, ``close_child_ends`` leaves only the waiter's ends.
"""
from __future__ import annotations

import os

# fcntl, struct, termios: imported where a terminal is handled (not on a served run's path)


class Stdio:
    def __init__(self, tty: bool, child: tuple[int, int, int], *, master: int = -1, out_r: int = -1,
                 err_r: int = -1, in_w: int = -1, _close_after_start: list[int] | None = None) -> None:
        self.tty = tty
        self.child = child               # fds for the container's 0, 1, 2
        self.master = master             # pty master (tty; set by the runtime backend)
        self.out_r, self.err_r = out_r, err_r  # stdout/stderr read ends (no tty)
        self.in_w = in_w                 # stdin write end (detached -i)
        self.keep: list[object] = []     # closed with the stdio (e.g. port reservations)
        self._close_after_start = _close_after_start or []

    @classmethod
    def make(cls, *, tty: bool, stdin: str) -> Stdio:
        """``stdin``: "inherit" (the caller's fd 0), "pipe", or "null"."""
        close: list[int] = []
        if tty:
            # the runtime allocates the pty (its slave becomes the container's /dev/console) and
            # hands back the master: ``master`` is set by the runtime backend after the start
            return cls(True, (-1, -1, -1))
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        close += [out_w, err_w]
        in_w = -1
        if stdin == "inherit":
            in_fd = 0
        elif stdin == "pipe":
            in_fd, in_w = os.pipe2(os.O_CLOEXEC)
            close.append(in_fd)
        else:
            in_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            close.append(in_fd)
        return cls(False, (in_fd, out_w, err_w), out_r=out_r, err_r=err_r, in_w=in_w,
                   _close_after_start=close)

    def close_child_ends(self) -> None:
        for fd in self._close_after_start:
            try:
                os.close(fd)
            except OSError:
                pass
        self._close_after_start = []

    def close(self) -> None:
        self.close_child_ends()
        for obj in self.keep:
            try:
                obj.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing what we own, best effort
                pass
        self.keep = []
        for name in ("master", "out_r", "err_r", "in_w"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)


def console_size(proc: dict) -> None:
    """``process.consoleSize`` from the caller's terminal (fd 0, else 1), when it has one: the
    runtime sets it on the pty before the command runs (a copy after the start would race with
    a command that asks at once)."""
    import fcntl
    import struct
    import termios

    for fd in (0, 1):
        if os.isatty(fd):
            try:
                rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
            except OSError:
                return
            if rows and cols:
                proc["consoleSize"] = {"height": rows, "width": cols}
            return


def copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class RawTerminal:
    """``with RawTerminal(0):`` puts a terminal in raw mode and restores it (no-op when not a tty)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[object] | None = None

    def __enter__(self) -> RawTerminal:
        if os.isatty(self.fd):
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)  # type: ignore[arg-type]
