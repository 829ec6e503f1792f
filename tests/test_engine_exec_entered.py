"""A served ``exec`` forks from a process the monitor keeps inside the container (runtime.entered)
from the second exec on: what the exec'd process gets must be what a direct exec gives it, the
kept process must not be visible in the container, and it must go away (idle, container stopped)."""
from __future__ import annotations

import os

import pytest
from engine_helpers import bb_fixture, monitor_pid, wait_until  # noqa: F401  (registers the 'bb' fixture)

pytestmark = pytest.mark.privileged

PROBE = ("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|SigIgn|SigBlk):' /proc/self/status; "
         "cat /proc/self/cgroup; id; pwd; echo $HOME $A; hostname; "
         "for n in mnt net pid ipc uts cgroup user; do readlink /proc/self/ns/$n; done")


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def _kept(bb, init: int) -> list[int]:  # type: ignore[no-untyped-def]
    """The monitor's children other than the container's init: the kept process(es)."""
    mon = monitor_pid(bb.runroot)
    return [p for p in _children(mon) if p != init] if mon else []


@pytest.mark.parametrize("kind", ["native", "fork+native-init", "python"])
def test_exec_through_the_kept_process_is_a_direct_exec(bb, kind) -> None:  # type: ignore[no-untyped-def]
    """``native``: the kept process is native/pallet-entered and its child execs native/pallet-init
    for the last steps (entered.exec_native); ``fork+native-init``: the kept process is a fork of
    the monitor (PALLET_ENTERED_BIN=0); ``python``: a fork whose child does the last steps itself
    (PALLET_INIT_BIN=0)."""
    from pallet.engine.prestart import init_helper
    from pallet.runtime import entered

    if kind == "python":
        bb.env["PALLET_INIT_BIN"] = "0"
    elif init_helper() is None or (kind == "native" and entered.binary() is None):
        pytest.skip("native/pallet-init or native/pallet-entered is not built (scripts/setup.sh)")
    if kind == "fork+native-init":
        bb.env["PALLET_ENTERED_BIN"] = "0"
    bb.env["PALLET_MONITOR_IDLE"] = "0"
    bb("run", "-d", "--name", "kx", "--network", "none", "busybox", "sleep", "120")
    init = int(bb("inspect", "-f", "{{.State.Pid}}", "kx").out)
    args = ("exec", "-e", "A=1", "-w", "/tmp", "kx", "sh", "-c", PROBE)
    variants = (("-u", "nobody"), (), ("--privileged",))

    def probe() -> list[str]:
        return [bb("exec", *v, *args[1:]).out for v in variants]

    served = probe()
    assert len(_kept(bb, init)) == 1  # made by the first exec
    assert probe() == served  # (through the kept process)
    bb.env["PALLET_SERVED"] = "0"  # a direct exec, by the CLI
    assert probe() == served
    del bb.env["PALLET_SERVED"]
    assert "Seccomp:\t2" in served[1] and "NoNewPrivs:\t0" in served[1] and "uid=65534" in served[0]
    assert served[2] != served[1] and "Seccomp:\t2" in served[2]  # all capabilities, the same filter
    # not a process of the container: its pid 1 and the probe's own processes only
    names = bb("exec", "kx", "sh", "-c", "cat /proc/[0-9]*/comm").out.split()
    assert "sleep" in names and not any("python" in n for n in names), names
    assert len(bb("top", "kx").out.strip().splitlines()) == 2  # header + sleep
    assert bb("exec", "kx", "sh", "-c", "exit 3", check=False).rc == 3
    assert bb.fail("exec", "kx", "nosuchcmd").rc == 127
    assert bb.fail("exec", "kx", "/etc").rc == 126
    assert bb("exec", "-i", "kx", "cat", input="in\n").out == "in\n"
    bb("stop", "-t", "0", "kx")
    assert wait_until(lambda: not _kept(bb, init), 5)  # it follows the container's init
    r = bb.fail("exec", "kx", "true")
    assert "not running" in r.err and len(r.err.strip().splitlines()) == 1
    bb("rm", "kx")


def test_kept_process_goes_when_idle_and_not_for_no_new_privileges(bb) -> None:  # type: ignore[no-untyped-def]
    bb.env["PALLET_MONITOR_IDLE"] = "0"
    bb.env["PALLET_EXEC_KEEP"] = "0.3"
    bb("run", "-d", "--name", "kx", "--network", "none", "busybox", "sleep", "120")
    init = int(bb("inspect", "-f", "{{.State.Pid}}", "kx").out)
    bb("exec", "kx", "true")
    assert wait_until(lambda: not _kept(bb, init), 5)
    bb("rm", "-f", "kx")
    bb("run", "-d", "--name", "nx", "--network", "none", "--security-opt", "no-new-privileges", "busybox", "sleep", "120")
    init = int(bb("inspect", "-f", "{{.State.Pid}}", "nx").out)
    for _ in range(2):  # the filter after the uid change, as in-process: never through a kept process
        out = bb("exec", "nx", "grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status").out
        assert out.split() == ["NoNewPrivs:", "1", "Seccomp:", "2"]
        assert not _kept(bb, init)
    bb("rm", "-f", "nx")


def test_served_exec_forwards_units_signal_set() -> None:
    """engine.served spells docker's sig-proxy set out (units is not imported on exec's path)."""
    from pallet.engine import served, units

    with served._Forward() as fwd:
        assert sorted(fwd.saved) == sorted(units.FORWARDED_SIGNALS)
