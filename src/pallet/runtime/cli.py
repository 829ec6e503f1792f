"""``pallet-runtime``: the built-in runtime behind runc's command contract.

    pallet-runtime [--root DIR] [--cgroup-manager v1|v2] COMMAND ...
      create [-b|--bundle DIR] [--pid-file F] [--console-socket SOCK] [--preserve-fds N] ID
      start ID | state ID | pause ID | resume ID | ps ID | list [-q] [--format json]
      kill [-a|--all] ID [SIGNAL]          (default TERM; names or numbers)
      delete [-f|--force] ID
      run [-b|--bundle DIR] [-d|--detach] [--pid-file F] [--console-socket SOCK] [--preserve-fds N] ID
      exec [-t|--tty] [-d|--detach] [--cwd DIR] [-e|--env K=V]... [-u|--user UID[:GID]]
           [-p|--process process.json] [--pid-file F] [--console-socket SOCK] ID [CMD...]

Exit status: the container's for ``run``/``exec`` in the foreground; 127/126 when its command
cannot be found/executed; 1 for any other failure (one line on stderr). The parser is
hand-written: argparse (and json, signal, socket) would double the start-up cost of ``run``.
Unknown runc global flags that containerd passes (--log, --log-format, --debug) are accepted.
"""
from __future__ import annotations

import gc

gc.disable()  # a short-lived command: the cyclic GC only costs here (~7% of a `run`'s CPU, perf)

import os  # noqa: E402
import sys  # noqa: E402

from pallet.errors import InvalidArgument, PalletError  # noqa: E402

SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
           "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16,
           "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23,
           "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31}
_VALUE_FLAGS = {"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file", "--console-socket": "console_socket",
                "--cwd": "cwd", "--env": "env", "-e": "env", "--user": "user", "-u": "user", "--process": "process",
                "-p": "process", "--root": "root", "--log": "log", "--log-format": "log_format",
                "--cgroup-manager": "cgroup_manager", "--criu": "criu", "--preserve-fds": "preserve_fds",
                "--format": "format"}
_BOOL_FLAGS = {"-d": "detach", "--detach": "detach", "-t": "tty", "--tty": "tty", "-f": "force", "--force": "force",
               "-q": "quiet", "--quiet": "quiet",
               "-a": "all", "--all": "all", "--debug": "debug", "--systemd-cgroup": "systemd_cgroup",
               "--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring", "--rootless": "rootless"}


def parse(argv: list[str], stop_at_positional: int = -1) -> tuple[dict, list[str]]:
    """Flags anywhere before the ``stop_at_positional``-th positional; then everything is positional."""
    opts: dict = {"env": []}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if 0 <= stop_at_positional <= len(pos) or a == "--":
            pos.extend(argv[i + (a == "--"):])
            break
        name, eq, val = a.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise InvalidArgument(f"flag {a} needs a value")
                val = argv[i]
            key = _VALUE_FLAGS[name]
            if key == "env":
                opts["env"].append(val)
            else:
                opts[key] = val
        elif a in _BOOL_FLAGS:
            opts[_BOOL_FLAGS[a]] = True
        elif a.startswith("-") and a != "-":
            raise InvalidArgument(f"unknown flag {a}")
        else:
            pos.append(a)
        i += 1
    return opts, pos


def signal_number(s: str) -> int:
    if s.isdigit():
        return int(s)
    n = s.upper().removeprefix("SIG")
    if n not in SIGNALS:
        raise InvalidArgument(f"unknown signal {s!r}")
    return SIGNALS[n]


def _one_id(pos: list[str], cmd: str) -> str:
    if len(pos) != 1:
        raise InvalidArgument(f"{cmd} needs exactly one container id")
    return pos[0]


def _send_console(sock_path: str, fd: int) -> None:
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(sock_path)
        s.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little"))])
    finally:
        s.close()


def _proxy_tty(master: int) -> None:
    """Foreground with a terminal and no console socket: copy between our stdio and the pty."""
    import select

    old = None
    if os.isatty(0):
        import termios
        import tty

        old = termios.tcgetattr(0)
        tty.setraw(0)
    try:
        fds = [master, 0]
        while fds:
            r, _, _ = select.select(fds, [], [])
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in r:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, old)


class _Forwarder:
    """Signals to a foreground ``run``/``exec`` go to the container's process. Installed before
    the container exists (a signal that arrives meanwhile is kept and sent once it does)."""

    SIGNALS = (1, 2, 3, 15, 10, 12, 28)

    def __init__(self) -> None:
        import _signal

        self.pid = 0
        self.pending: list[int] = []
        for s in self.SIGNALS:
            _signal.signal(s, self._on)

    def _on(self, sig: int, _frame: object) -> None:
        if not self.pid:
            self.pending.append(sig)
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def attach(self, pid: int) -> None:
        self.pid = pid
        for sig in self.pending:
            self._on(sig, None)
        self.pending.clear()


def _run(g: dict, argv: list[str], start: bool) -> int:
    from pallet.runtime import container as rt
    from pallet.runtime import process

    o, pos = parse(argv)
    cid = _one_id(pos, "run" if start else "create")
    detach = bool(o.get("detach")) or not start
    fwd = None if detach else _Forwarder()
    c = rt.create(cid, o.get("bundle") or os.getcwd(), root=g["root"], start=start,
                  cgroup_manager=g.get("cgroup_manager"), pid_file=o.get("pid_file"),
                  preserve_fds=int(o.get("preserve_fds") or 0))
    if c.console_fd is not None:
        if o.get("console_socket"):
            _send_console(o["console_socket"], c.console_fd)
        elif detach:
            c.delete(force=True)
            raise InvalidArgument("a terminal needs --console-socket when detached")
    if detach or fwd is None:
        return 0
    fwd.attach(c.pid)
    if c.console_fd is not None and not o.get("console_socket"):
        _proxy_tty(c.console_fd)
    code, _oom = c.wait()
    process._t("exited")
    c.delete(force=True)
    process._t("deleted")
    return code


def _exec(g: dict, argv: list[str]) -> int:
    from pallet.runtime import container as rt
    from pallet.runtime import jsonlite, process

    o, pos = parse(argv, stop_at_positional=1)
    if not pos:
        raise InvalidArgument("exec needs a container id")
    cid, cmd = pos[0], pos[1:]
    proc: dict = jsonlite.load_file(o["process"]) if o.get("process") else {}
    if cmd:
        proc["args"] = cmd
    if not proc.get("args"):
        raise InvalidArgument("exec needs a command (or -p process.json)")
    c = rt.load(cid, g["root"])
    if o["env"]:
        base = proc.get("env") or jsonlite.load_file(c.dir + "/config.json").get("process", {}).get("env", [])
        keys = {e.partition("=")[0] for e in o["env"]}
        proc["env"] = [e for e in base if e.partition("=")[0] not in keys] + o["env"]
    if o.get("cwd"):
        proc["cwd"] = o["cwd"]
    if o.get("user"):
        u, _, gr = o["user"].partition(":")
        proc["user"] = {"uid": int(u), "gid": int(gr or 0)}
    process._t("exec: loaded")
    fwd = None if o.get("detach") else _Forwarder()
    p = c.exec(proc, tty=bool(o.get("tty")) or None)
    process._t("exec: started")
    if o.get("pid_file"):
        with open(o["pid_file"], "w") as f:
            f.write(str(p.pid))
    if p.console_fd is not None and o.get("console_socket"):
        _send_console(o["console_socket"], p.console_fd)
    if o.get("detach") or fwd is None:
        return 0
    fwd.attach(p.pid)
    if p.console_fd is not None and not o.get("console_socket"):
        _proxy_tty(p.console_fd)
    code = p.wait()
    process._t("exec: exited")
    return code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from pallet.runtime import state

    try:
        gi = next((i for i, a in enumerate(args) if not a.startswith("-") and
                   (i == 0 or args[i - 1].partition("=")[0] not in _VALUE_FLAGS or "=" in args[i - 1])), None)
        if gi is None:
            raise InvalidArgument("usage: pallet-runtime [--root DIR] create|start|state|kill|delete|run|exec ...")
        g, _ = parse(args[:gi])
        g.setdefault("root", state.DEFAULT_ROOT)
        if g.get("systemd_cgroup"):
            raise InvalidArgument("--systemd-cgroup is not supported")
        cmd, rest = args[gi], args[gi + 1:]
        if cmd in ("create", "run"):
            return _run(g, rest, start=cmd == "run")
        if cmd == "exec":
            return _exec(g, rest)
        from pallet.runtime import container as rt
        from pallet.runtime import jsonlite

        o, pos = parse(rest)
        if cmd == "list":  # runc's columns; -q ids only; --format json
            states = [rt.load(cid, g["root"]).state() for cid in state.list_ids(g["root"])]
            if o.get("quiet"):
                for st in states:
                    print(st["id"])
            elif o.get("format") == "json":
                print(jsonlite.dumps(states))
            else:
                rows = [("ID", "PID", "STATUS", "BUNDLE")] + [(st["id"], str(st["pid"]), st["status"], st["bundle"])
                                                             for st in states]
                w = [max(len(r[i]) for r in rows) for i in range(3)]
                for r in rows:
                    print(f"{r[0]:<{w[0]}}   {r[1]:<{w[1]}}   {r[2]:<{w[2]}}   {r[3]}")
            return 0
        if cmd == "kill":
            if not 1 <= len(pos) <= 2:
                raise InvalidArgument("usage: kill [--all] ID [SIGNAL]")
            rt.load(pos[0], g["root"]).kill(signal_number(pos[1] if len(pos) > 1 else "TERM"), bool(o.get("all")))
            return 0
        cid = _one_id(pos, cmd)
        c = rt.load(cid, g["root"])
        if cmd == "start":
            c.start()
        elif cmd == "state":
            print(jsonlite.dumps(c.state()))
        elif cmd == "delete":
            c.delete(force=bool(o.get("force")))
        elif cmd == "pause":
            c.pause()
        elif cmd == "resume":
            c.resume()
        elif cmd == "ps":
            print("\n".join(str(p) for p in c.cgroup.pids()))
        else:
            raise InvalidArgument(f"unknown command {cmd!r}")
        return 0
    except PalletError as e:
        sys.stderr.write(f"pallet-runtime: {e}\n")
        return e.exit_code if e.exit_code in (126, 127) else 1
    except OSError as e:  # e.g. no permission on --root: one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"pallet-runtime: {e.strerror or e}{where}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's tear-down (every module and type freed): nothing to do


if __name__ == "__main__":
    entry()
