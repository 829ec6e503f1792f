"""One container's network cost in a fresh process, as ``pallet run`` pays it.

  none   : a new netns made and pinned (what any container costs; the runtime does it)
  bridge : import pallet.network.api + the same netns + setup (IPAM, veth, address, route)
           + teardown (release; the kernel removes the veth with the netns)
Both first import the stdlib modules an engine's run path has loaded anyway.

Usage: python bench/network_attach.py none|bridge ROOT RUNROOT  (run by bench/network.sh)
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys

# what an engine's run path has imported anyway, so the figure is what networking adds
for _m in ("contextlib", "dataclasses", "fcntl", "json", "pathlib", "re", "signal", "socket", "sqlite3",
           "struct", "subprocess", "typing"):
    importlib.import_module(_m)

mode, root, run = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(run, "netns", f"bench{os.getpid()}")
if mode == "none":
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o444))
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    assert libc.unshare(0x40000000) == 0
    assert libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, 4096, None) == 0
    assert libc.setns(own, 0x40000000) == 0
    assert libc.umount2(path.encode(), 2) == 0
    os.unlink(path)
else:
    from pallet.network import api

    cid = f"{os.getpid():064d}"
    api.create_netns(path)
    try:
        api.setup(root, run, cid, path)
    finally:
        api.teardown(root, run, cid, path, networks=["bridge"])
