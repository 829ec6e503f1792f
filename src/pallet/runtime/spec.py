"""A runtime-spec ``config.json`` with Docker's defaults (moby ``oci/defaults.go`` semantics).

``default_spec(args, rootfs, ...)`` gives what ``docker run`` would hand runc for the same
flags: Docker's default capability set in every set (CapEff/CapBnd 00000000a80425fb), its
mounts, masked and read-only paths, devices cgroup, Docker's default seccomp profile evaluated
for the final capabilities, and the resource flags translated (``--memory-swap`` defaults to
twice ``--memory``; ``--cpus`` becomes a CFS quota over a 100 ms period).
"""
from __future__ import annotations

from pallet.errors import InvalidArgument
from pallet.runtime import seccomp as _seccomp
from pallet.runtime.linux import caps as _caps

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]


def capabilities(cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                 privileged: bool = False) -> list[str]:
    """Docker's rules: start from the default set (or all when privileged), ``ALL`` allowed."""
    if privileged:
        return list(_caps.CAPS)
    add = [_caps.normalize(c) for c in cap_add or ()]
    drop = [_caps.normalize(c) for c in cap_drop or ()]
    base = [] if "CAP_ALL" in drop else list(DEFAULT_CAPS)
    if "CAP_ALL" in add:
        base = list(_caps.CAPS)
    out = [c for c in base if c not in drop]
    out += [c for c in add if c != "CAP_ALL" and c not in out]
    return out


def default_spec(args: list[str], rootfs: str = "rootfs", *, env: list[str] | None = None, cwd: str = "/",
                 hostname: str = "", uid: int = 0, gid: int = 0, additional_gids: list[int] | None = None,
                 terminal: bool = False, cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                 privileged: bool = False, read_only: bool = False, no_new_privileges: bool = False,
                 seccomp: str | dict | None = "default", memory: int | None = None,
                 memory_swap: int | None = None, cpus: float | None = None, cpu_shares: int | None = None,
                 pids_limit: int | None = None, tmpfs: dict[str, str] | None = None,
                 binds: list[tuple[str, str, bool]] | None = None, network: str = "none",
                 cgroups_path: str | None = None, rlimits: list[dict] | None = None,
                 annotations: dict[str, str] | None = None, userns: tuple[int, int, int] | None = None
                 ) -> dict[str, Any]:
    """The spec for ``docker run`` defaults plus the given flags. ``seccomp``: "default",
    "unconfined", a Docker-format profile path, or an already-parsed Docker-format dict.
    ``userns=(container_id, host_id, size)`` adds a user namespace with that uid/gid map."""
    if not args:
        raise InvalidArgument("no command given")
    caps = capabilities(cap_add, cap_drop, privileged)
    envl = list(env or [])
    if not any(e.startswith("PATH=") for e in envl):
        envl.insert(0, "PATH=" + DEFAULT_PATH)
    if hostname and not any(e.startswith("HOSTNAME=") for e in envl):
        envl.append("HOSTNAME=" + hostname)
    if terminal and not any(e.startswith("TERM=") for e in envl):
        envl.append("TERM=xterm")
    process: dict[str, Any] = {
        "terminal": terminal, "user": {"uid": uid, "gid": gid}, "args": list(args), "env": envl, "cwd": cwd or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": no_new_privileges,
    }
    if uid != 0:  # a non-root user gets no effective caps (Docker: only bounding)
        process["capabilities"] = {"bounding": list(caps)}
    # Docker (runc's GetExecUser) lists the primary group among the supplementary ones by default
    process["user"]["additionalGids"] = list(additional_gids) if additional_gids is not None else [gid]
    if rlimits:
        process["rlimits"] = rlimits
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if network != "host":
        namespaces.append({"type": "network"})
    resources: dict[str, Any] = {"devices": [{"allow": privileged, "access": "rwm"}]}
    if memory is not None:
        if memory < 6 << 20:
            raise InvalidArgument("minimum memory limit allowed is 6MB")
        swap = memory * 2 if memory_swap is None else memory_swap
        if swap != -1 and swap < memory:
            raise InvalidArgument("minimum memoryswap limit should be larger than memory limit")
        resources["memory"] = {"limit": memory, "swap": swap}
    cpu: dict[str, Any] = {}
    if cpus is not None:
        if cpus <= 0:
            raise InvalidArgument(f"invalid --cpus value {cpus}: must be positive")
        cpu.update(period=100000, quota=int(cpus * 100000))
    if cpu_shares:
        cpu["shares"] = cpu_shares
    if cpu:
        resources["cpu"] = cpu
    if pids_limit is not None:
        resources["pids"] = {"limit": pids_limit}
    linux: dict[str, Any] = {"namespaces": namespaces, "resources": resources}
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if userns:
        cid, hid, size = userns
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": cid, "hostID": hid, "size": size}]
        linux["gidMappings"] = [{"containerID": cid, "hostID": hid, "size": size}]
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if seccomp != "unconfined" and seccomp is not None:
            prof = (_seccomp.default_profile() if seccomp == "default"
                    else _seccomp.load_profile(seccomp) if isinstance(seccomp, str) else seccomp)
            linux["seccomp"] = _seccomp.from_docker_profile(prof, caps)
    mounts = default_mounts()
    if privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    for dest, opts in (tmpfs or {}).items():
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec"] + ([o for o in opts.split(",") if o] if opts else [])})
    for src, dest, ro in binds or ():
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate"] + (["ro"] if ro else [])})
    spec: dict[str, Any] = {"ociVersion": OCI_VERSION, "process": process,
                            "root": {"path": rootfs, "readonly": read_only},
                            "hostname": hostname, "mounts": mounts, "linux": linux}
    if annotations:
        spec["annotations"] = dict(annotations)
    return spec
