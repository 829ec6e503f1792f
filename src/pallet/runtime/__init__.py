"""pallet.runtime: the built-in OCI runtime. It takes a runtime-spec bundle and nothing else,
and imports only ``pallet.oci`` and ``pallet.errors``, so it stands alone (``pallet-runtime``).

Modules:
  container   the library API: ``create(id, bundle, spec, ...) -> Container`` with ``start``,
              ``wait -> (exit_code, oom_killed)``, ``kill``, ``pause``/``resume``, ``stats``,
              ``state``, ``exec``, ``delete``; ``load(id, root)`` (see its docstring)
  process     the container's first process: numbered sync steps over a socketpair
  enter       exec into a running container (setns, clone(CLONE_PARENT), cgroup join)
  hooks       OCI lifecycle hooks
  spec        ``default_spec(args, rootfs, ...)``: Docker's defaults as a runtime spec
  seccomp     Docker-format profiles -> ``linux.seccomp`` -> BPF (cached by hash)
  state       the state directory (runtime.md "State"), one directory per container
  external    runc / crun through the same command contract
  cli         ``pallet-runtime`` (runc's commands)
  jsonlite    JSON through ``_json`` without importing ``json``/``re`` (start-up cost)
  linux/      syscalls (every ctypes call), mounts, caps, cgroups (registry) with the
              cgroup_v1 / cgroup_v2 backends over cgroupfs helpers

Nothing here is imported by ``import pallet.runtime``: import the module you need.
"""
from __future__ import annotations
