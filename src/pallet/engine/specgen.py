"""A container's runtime spec (``pallet.runtime.spec.default_spec``) from its stored config.

The engine resolves what docker's daemon resolves before calling the runtime: the user (from
the image's /etc/passwd and /etc/group, read from the container's layers, never following a
symlink out), the mounts (binds, volumes, tmpfs, the /etc/hostname, /etc/hosts and
/etc/resolv.conf files it writes), ``--init`` (tini-static bind-mounted at /sbin/docker-init and
put first, as docker does with docker-init).
"""
from __future__ import annotations

import os
import stat

from pallet.engine.containers import Container, Dirs
from pallet.errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (re), sqlite3 (datetime): not needed at run time here
    from typing import Any

INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")
INIT_PATH = "/sbin/docker-init"


def cgroup_parent() -> str:
    """Every container's cgroup is ``/<parent>/<id>`` in each hierarchy (env PALLET_CGROUP_PARENT)."""
    return os.environ.get("PALLET_CGROUP_PARENT", "pallet").strip("/") or "pallet"


def find_in_layers(c: Container, dirs: Dirs, rel: str) -> str | None:
    """The file at ``rel`` as the container sees it (upper dir first, then layers top-first);
    None when missing, whited out, or reached through a symlink."""
    return find_in([str(dirs.upper), *c.config.get("Lowerdirs", [])], rel)


def find_in(layers: list[str], rel: str) -> str | None:
    """``find_in_layers`` over a list of layer dirs, top first."""
    for layer in layers:
        cur = layer
        ok = True
        for part in rel.strip("/").split("/"):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except OSError:
                ok = False
                break
            if stat.S_ISLNK(st.st_mode) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                return None
        if ok:
            return cur if stat.S_ISREG(os.lstat(cur).st_mode) else None
    return None


def _table(c: Container, dirs: Dirs, rel: str) -> list[list[str]]:
    return _table_in([str(dirs.upper), *c.config.get("Lowerdirs", [])], rel)


def _table_in(layers: list[str], rel: str) -> list[list[str]]:
    path = find_in(layers, rel)
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [ln.rstrip("\n").split(":") for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError:
        return []


def resolve_user(c: Container, dirs: Dirs, user: str) -> tuple[int, int, list[int]]:
    """docker's ``-u name|uid[:group|gid]`` -> (uid, gid, supplementary gids)."""
    if not user:
        user = "0"
    uname, _, gname = user.partition(":")
    passwd = _table(c, dirs, "etc/passwd")
    groups = _table(c, dirs, "etc/group")
    uid = gid = None
    name = None
    for row in passwd:
        if len(row) >= 4 and (row[0] == uname or row[2] == uname):
            name, uid, gid = row[0], int(row[2]), int(row[3])
            break
    if uid is None:
        if not uname.isdigit():
            raise InvalidArgument(f"unable to find user {uname}: no matching entries in passwd file")
        uid, gid = int(uname), 0
    if gname:
        for row in groups:
            if len(row) >= 3 and (row[0] == gname or row[2] == gname):
                gid = int(row[2])
                break
        else:
            if not gname.isdigit():
                raise InvalidArgument(f"unable to find group {gname}: no matching entries in group file")
            gid = int(gname)
    # docker (moby getUser) always lists the primary gid first among the supplementary groups,
    # then the /etc/group memberships of a named user: `id` shows groups=<gid> even with none
    extra: list[int] = [int(gid or 0)]
    if name is not None and not gname:
        for row in groups:
            if len(row) >= 4 and name in row[3].split(",") and int(row[2]) != gid:
                extra.append(int(row[2]))
    # --group-add (HostConfig.GroupAdd): for the container's process and every exec (moby getUser)
    for g in group_gids(groups, list(c.host.get("GroupAdd") or [])):
        if g not in extra:
            extra.append(g)
    return uid, int(gid or 0), extra


def resolve_group_add(layers: list[str], names: list[str]) -> list[int]:
    """``--group-add`` values checked against the image's /etc/group (``layers`` top first), as
    ``create`` does before anything is written."""
    return group_gids(_table_in(layers, "etc/group"), names)


def group_gids(groups: list[list[str]], names: list[str]) -> list[int]:
    """moby's GetAdditionalGroups: a name or gid listed in /etc/group, else a number in
    [0, 2^31-1]; otherwise "Unable to find group NAME: no matching entries in group file"."""
    out: list[int] = []
    for want in names:
        gid = None
        for row in groups:
            if len(row) >= 3 and (row[0] == want or row[2] == want) and row[2].isdigit():
                gid = int(row[2])
                break
        if gid is None:
            try:
                gid = int(want, 10)
            except ValueError:
                raise InvalidArgument(f"Unable to find group {want}: no matching entries in group file") from None
            if not 0 <= gid <= 2**31 - 1:
                raise InvalidArgument(f"group {want}: numerical result out of range")
        if gid not in out:
            out.append(gid)
    return out


_HOSTS_BASE = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def write_etc_files(c: Container, dirs: Dirs, ip: str | None = None) -> dict[str, str]:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf in the container dir (bind-mounted). Bridge and
    user networks, --add-host and --dns go through ``pallet.network.etcfiles``; ``none`` (the
    common, fast case) writes docker's content without importing the network package."""
    hostname = c.cfg["Hostname"]
    mode = c.host.get("NetworkMode")
    extra_hosts = c.host.get("ExtraHosts") or []
    dns = c.host.get("Dns") or []
    search = c.host.get("DnsSearch") or []
    options = c.host.get("DnsOptions") or []
    files: dict[str, str] = {"hostname": hostname + "\n"}
    if mode == "host":
        for name in ("hosts", "resolv.conf"):
            try:
                with open("/etc/" + name) as f:
                    files[name] = f.read()
            except OSError:
                files[name] = _HOSTS_BASE if name == "hosts" else ""
    elif mode == "none" and not extra_hosts and not dns and not search and not options:
        files["hosts"] = _HOSTS_BASE
        files["resolv.conf"] = _host_resolv()
    else:
        from pallet.network import etcfiles

        extra = [etcfiles.parse_add_host(h) for h in extra_hosts]
        files["hosts"] = etcfiles.hosts_content(hostname, ip, extra)
        files["resolv.conf"] = etcfiles.resolv_conf_content(dns, search, options)
    out = {}
    for name, text in files.items():
        p = str(dirs.dir / name)
        with open(p, "w") as f:
            f.write(text)
        out["/etc/" + name] = p
    return out


def _host_resolv() -> str:
    """The host's resolv.conf without loopback nameservers (docker falls back to 8.8.8.8/8.8.4.4)."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    keep = [ln for ln in lines if not (ln.startswith("nameserver") and (" 127." in ln or " ::1" in ln))]
    if not any(ln.startswith("nameserver") for ln in keep):
        keep += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(keep) + "\n"


def build(c: Container, dirs: Dirs, *, rootfs: str = "rootfs", netns: str | None = None,
          ip: str | None = None) -> dict[str, Any]:
    from pallet.runtime import spec as rspec

    cfg, host, sec = c.cfg, c.host, c.config.get("Security", {})
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    binds: list[tuple[str, str, bool]] = []
    tmpfs = dict(host.get("Tmpfs") or {})
    for m in c.mounts:
        if m["Type"] == "tmpfs":
            tmpfs[m["Destination"]] = m.get("Options", "")
        else:
            binds.append((m["Source"], m["Destination"], not m["RW"]))
    for dst, src in write_etc_files(c, dirs, ip).items():
        if not any(b[1] == dst for b in binds):
            binds.append((src, dst, False))
    if host.get("Init"):
        init = next((p for p in INIT_BINARIES if os.path.exists(p)), None)
        if init is None:
            raise Unavailable("--init needs a static init binary (apt-get install tini: /usr/bin/tini-static)")
        binds.append((init, INIT_PATH, True))
        args = [INIT_PATH, "--", *args]
    uid, gid, extra = resolve_user(c, dirs, cfg.get("User") or "")
    mem = host.get("Memory") or None
    swap = host.get("MemorySwap") or None
    spec = rspec.default_spec(
        args, rootfs, env=list(cfg.get("Env") or []), cwd=cfg.get("WorkingDir") or "/",
        hostname=cfg["Hostname"], uid=uid, gid=gid,
        additional_gids=extra, terminal=bool(cfg.get("Tty")), cap_add=host.get("CapAdd") or [],
        cap_drop=host.get("CapDrop") or [], privileged=bool(host.get("Privileged")),
        read_only=bool(host.get("ReadonlyRootfs")), no_new_privileges=bool(sec.get("no_new_privileges")),
        seccomp=sec.get("seccomp") or "default", memory=mem, memory_swap=swap if mem else None,
        cpus=(host["NanoCpus"] / 1e9) if host.get("NanoCpus") else None,
        cpu_shares=host.get("CpuShares") or None, pids_limit=host.get("PidsLimit"), tmpfs=tmpfs,
        binds=binds, network="host" if host.get("NetworkMode") == "host" else "none",
        cgroups_path=f"/{cgroup_parent()}/{c.id}",
        annotations={"org.pallet.container.name": c.name})
    if netns:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns
    return spec
