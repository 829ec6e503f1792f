"""``pallet system df|check``, ``pallet version`` and ``pallet info`` (minimal)."""
from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any

from pallet.engine.containers import tree_size


def add_parser(sub: Any) -> None:
    grp = sub.add_parser("system", help="manage pallet")
    gsub = grp.add_subparsers(dest="system_verb", metavar="COMMAND", parser_class=type(grp))
    df = gsub.add_parser("df", help="show disk usage")
    df.add_argument("--format", help="json, or a template such as '{{.Type}} {{.Size}}'")
    df.set_defaults(func=_df)
    ck = gsub.add_parser("check", help="verify blobs, layers and database rows")
    ck.add_argument("--repair", action="store_true", help="remove what cannot be trusted")
    ck.set_defaults(func=_check)
    for name, fn in (("info", _info), ("version", _version)):
        p = gsub.add_parser(name)
        p.add_argument("--format", help="json, or a template such as '{{.KernelVersion}}'")
        p.set_defaults(func=fn)
        p = sub.add_parser(name, help=f"show pallet {name}")
        p.add_argument("--format", help="json, or a template such as '{{.KernelVersion}}'")
        p.set_defaults(func=fn)


def _df(g: Any, ns: argparse.Namespace) -> int:
    """docker's ``system df``: Images (shared layers counted once), Containers (their writable
    layers; running ones are not reclaimable), Local Volumes (a volume no container names is
    reclaimable)."""
    from pallet.cli.fmt import human_size, render, table
    from pallet.engine.image_info import disk_usage
    from pallet.store import Store

    with Store.open(g.root, g.runroot) as st:
        u = disk_usage(st)
        c, v = _containers(st, g), _volumes(st, g)

    def reclaim(n: int, total: int) -> str:
        return human_size(n) + (f" ({100 * n // total}%)" if total else "")

    objs = [
        {"Type": "Images", "TotalCount": str(u.images), "Active": str(u.active), "Size": human_size(u.size),
         "Reclaimable": reclaim(u.reclaimable, u.size)},
        {"Type": "Containers", "TotalCount": str(c.total), "Active": str(c.active), "Size": human_size(c.size),
         "Reclaimable": reclaim(c.reclaimable, c.size)},
        {"Type": "Local Volumes", "TotalCount": str(v.total), "Active": str(v.active), "Size": human_size(v.size),
         "Reclaimable": reclaim(v.reclaimable, v.size)},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
    ]
    if ns.format:
        print(render(ns.format, objs))
        return 0
    print(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                [[o["Type"], o["TotalCount"], o["Active"], o["Size"], o["Reclaimable"]] for o in objs]))
    return 0


class _Usage:
    def __init__(self) -> None:
        self.total = self.active = self.size = self.reclaimable = 0

    def add(self, size: int, active: bool) -> None:
        self.total += 1
        self.size += size
        if active:
            self.active += 1
        else:
            self.reclaimable += size


def _containers(st: Any, g: Any) -> _Usage:
    """Containers and the size of their writable layers; nothing when the engine's tables are absent."""
    u = _Usage()
    try:
        from pallet.engine import containers, db

        cs = containers.list_all(db.connection(st))
    except (ImportError, RuntimeError):
        return u
    for c in cs:
        u.add(tree_size(containers.Dirs(g.root, g.runroot, c.id).upper), c.running)
    return u


def _volumes(st: Any, g: Any) -> _Usage:
    """Named and anonymous volumes; active = named by a container (running or not), as docker's links."""
    u = _Usage()
    try:
        from pallet.engine import db, volumes

        conn = db.connection(st)
        rows = volumes.list_all(conn)
    except (ImportError, RuntimeError):
        return u
    for row in rows:
        u.add(tree_size(str(volumes.data_dir(g.root, row[0]))), bool(volumes.users(conn, row[0])))
    return u


def _check(g: Any, ns: argparse.Namespace) -> int:
    from pallet.store import Store

    with Store.open(g.root, g.runroot) as st:
        rep = st.check(repair=ns.repair)
    for p in rep.problems:
        print(f"problem: {p}")
    for x in rep.garbage:
        print(f"garbage: {x}")
    for r in rep.repaired:
        print(f"repaired: {r}")
    if rep.problems and not rep.ok:
        print(f"Error: {len(rep.problems)} problem(s) found; run 'pallet system check --repair' to remove "
              "what cannot be trusted", file=sys.stderr)
        return 1
    print("store ok" if not rep.problems else "store repaired")
    return 0


def _version_info() -> dict[str, str]:
    from pallet import __version__

    m = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)
    return {"Version": __version__, "PythonVersion": platform.python_version(), "Os": "linux",
            "Arch": arch, "KernelVersion": platform.release()}


def _version(g: Any, ns: argparse.Namespace) -> int:
    v = _version_info()
    if ns.format:  # `json`: compact, as docker's; or a template
        from pallet.cli.fmt import go_json, template

        print(go_json(v) if ns.format.strip() == "json" else template(ns.format, v))
        return 0
    print(f"Version:         {v['Version']}\nPython version:  {v['PythonVersion']}\n"
          f"OS/Arch:         {v['Os']}/{v['Arch']}\nKernel version:  {v['KernelVersion']}")
    return 0


def _info(g: Any, ns: argparse.Namespace) -> int:
    from pallet.store import Store

    with Store.open(g.root, g.runroot) as st:
        n = len(st.list_images())
    v = _version_info()
    info = {"Images": n, "Driver": "overlay", "DockerRootDir": os.path.abspath(g.root),
            "RunRoot": os.path.abspath(g.runroot), "ServerVersion": v["Version"],
            "KernelVersion": v["KernelVersion"], "OperatingSystem": _os_name(), "OSType": "linux",
            "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
            "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
    if ns.format:  # `json`: compact, as docker's; or a template
        from pallet.cli.fmt import go_json, template

        print(go_json(info) if ns.format.strip() == "json" else template(ns.format, info))
        return 0
    print(f"Images: {info['Images']}\nServer Version: {info['ServerVersion']}\n"
          f"Storage Driver: {info['Driver']}\nKernel Version: {info['KernelVersion']}\n"
          f"Operating System: {info['OperatingSystem']}\nOSType: linux\nArchitecture: {info['Architecture']}\n"
          f"CPUs: {info['NCPU']}\nTotal Memory: {info['MemTotal']}\n"
          f"Pallet Root Dir: {info['DockerRootDir']}\nPallet Run Root: {info['RunRoot']}")
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
