"""Parsing and validation of container option values, with docker's accepted syntax.

Every function raises ``InvalidArgument`` naming the flag and the value, so the CLI prints one
line and nothing has been created yet (options are validated before any state is written).
"""
from __future__ import annotations

import _signal  # not `signal`: its enums import enum (~3 ms); Signals only where names are printed
import os

from pallet.errors import InvalidArgument

# what a foreground run/exec/attach passes on to the container's process (docker's sig-proxy set)
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)

_SIZE_PATTERN = r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$"  # compiled on first use: ``re`` is not on run's path
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# Linux capabilities by number (capability.h); docker accepts them with or without CAP_.
CAPS = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
    "PERFMON BPF CHECKPOINT_RESTORE"
).split()


def parse_bytes(flag: str, value: str) -> int:
    """docker's RAMInBytes: ``512m``, ``1g``, ``1.5GiB``, plain bytes."""
    import re

    m = re.match(_SIZE_PATTERN, value.strip(), re.I)
    if not m:
        raise InvalidArgument(f"invalid argument {value!r} for \"{flag}\" flag: invalid size: {value!r}")
    return int(float(m.group(1)) * _MULT[m.group(2).lower()])


def parse_memory(flag: str, value: str | None, *, allow_unlimited: bool = False) -> int:
    if value is None or value == "":
        return 0
    if allow_unlimited and value.strip() == "-1":
        return -1
    n = parse_bytes(flag, value)
    if flag == "--memory" and 0 < n < 6 * (1 << 20):
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    return n


def parse_cpus(value: str | None) -> int:
    """``--cpus 1.5`` -> NanoCpus; must be in (0, number of CPUs]."""
    if value is None:
        return 0
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for \"--cpus\" flag: failed to parse {value!r} "
                              "as a rational number") from None
    ncpu = os.cpu_count() or 1
    if not 0 < cpus <= ncpu or cpus != cpus:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    return int(round(cpus * 1e9))


def parse_int(flag: str, value: str | int | None, *, minimum: int | None = None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for \"{flag}\" flag: not an integer") from None
    if minimum is not None and n < minimum:
        raise InvalidArgument(f"invalid argument {value!r} for \"{flag}\" flag: must be >= {minimum}")
    return n


def normalize_cap(flag: str, cap: str) -> str:
    c = cap.strip().upper()
    if c == "ALL":
        return "ALL"
    if c.startswith("CAP_"):
        c = c[4:]
    if c not in CAPS:
        raise InvalidArgument(f"invalid argument {cap!r} for \"{flag}\": unknown capability: \"CAP_{c}\"")
    return "CAP_" + c


def parse_signal(flag: str, value: str) -> int:
    """``SIGTERM``, ``TERM``, ``15``, ``SIGRTMIN+3``."""
    v = value.strip().upper()
    if v.isdigit():
        n = int(v)
        if 0 < n < 65:
            return n
    else:
        name = v if v.startswith("SIG") else "SIG" + v
        if name.startswith("SIGRTMIN+") and name[9:].isdigit():
            return int(_signal.SIGRTMIN) + int(name[9:])
        # signal.Signals' members: _signal's upper-case SIG* names except SIG_DFL/SIG_IGN/SIG_BLOCK...
        sig = getattr(_signal, name, None) if name.isupper() and not name.startswith("SIG_") else None
        if isinstance(sig, int):
            return int(sig)
    raise InvalidArgument(f"invalid signal: {value}")


def signal_name(n: int) -> str:
    try:
        import signal

        return signal.Signals(n).name
    except ValueError:
        return str(n)


def parse_restart(value: str | None) -> dict[str, object]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]`` -> docker's RestartPolicy."""
    if not value:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy {value!r}")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    n = parse_int("--restart", count, minimum=0) if count else 0
    return {"Name": name, "MaximumRetryCount": n or 0}


def parse_env(values: list[str], files: list[str]) -> list[str]:
    """``-e K=V``, ``-e K`` (taken from pallet's own environment when set), ``--env-file F``."""
    out: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise InvalidArgument(f"open {f}: {e.strerror}") from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                out.extend(_env_item(line))
    for v in values:
        out.extend(_env_item(v))
    return out


def _env_item(v: str) -> list[str]:
    k, eq, _ = v.partition("=")
    if not k or " " in k:
        raise InvalidArgument(f"invalid environment variable: {v}")
    if eq:
        return [v]
    return [f"{k}={os.environ[k]}"] if k in os.environ else []


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Image env first, user env overrides by key (docker's order)."""
    keys: dict[str, str] = {}
    for item in base + extra:
        keys[item.partition("=")[0]] = item
    return list(keys.values())


def parse_labels(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise InvalidArgument(f"invalid label: {v!r}")
        out[k] = val
    return out


def parse_security_opts(values: list[str]) -> dict[str, object]:
    """``no-new-privileges[:true]``, ``seccomp=unconfined``, ``seccomp=PROFILE.json``."""
    res: dict[str, object] = {"no_new_privileges": False, "seccomp": None}
    for v in values:
        key, sep, val = v.partition("=") if "=" in v else v.partition(":")
        if key == "no-new-privileges":
            res["no_new_privileges"] = val in ("", "true")
        elif key == "seccomp" and sep:
            if val == "unconfined":
                res["seccomp"] = "unconfined"
            else:
                import json

                try:
                    with open(val, encoding="utf-8") as fh:
                        res["seccomp"] = json.load(fh)
                except OSError as e:
                    raise InvalidArgument(f"opening seccomp profile ({val}) failed: {e.strerror}") from None
                except ValueError as e:
                    raise InvalidArgument(f"decoding seccomp profile {val} failed: {e}") from None
        elif key in ("label", "apparmor"):
            continue  # no LSM here; accepted and ignored like docker on a host without them
        else:
            raise InvalidArgument(f"invalid --security-opt: {v!r}")
    return res


def parse_tmpfs(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        dst, _, opts = v.partition(":")
        if not dst.startswith("/"):
            raise InvalidArgument(f"invalid mount path for --tmpfs: {dst!r} (must be absolute)")
        out[dst] = opts
    return out


def human_duration(seconds: float) -> str:
    """go-units HumanDuration ("Less than a second", "2 hours", "About a minute")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = int(seconds / 60)
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = int(seconds / 3600 + 0.5)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"
