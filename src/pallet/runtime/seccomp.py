"""Seccomp: Docker's profile format -> the runtime spec's ``linux.seccomp`` -> cached BPF.

* :func:`from_docker_profile` evaluates a profile in Docker's format (moby
  ``profiles/seccomp``: ``archMap``, per-rule ``includes``/``excludes`` on ``caps``,
  ``arches``, ``minKernel``) for the container's capabilities and the host architecture, giving
  the OCI form (config-linux.md "seccomp"). :func:`default_profile` is Docker's default
  (``data/seccomp_default.json``, written from moby's default semantics).
* :func:`bpf_for` compiles the OCI form with libseccomp (``pyseccomp``, imported only on a cache
  miss: ~35 ms) and caches the raw BPF under ``cache_dir`` by the SHA-256 of the canonical
  JSON, so a container start only reads a file and loads it with ``seccomp(2)``.
"""
from __future__ import annotations

import _sha256
import os

from pallet.errors import InvalidArgument, NotImplementedFeature
from pallet.runtime import jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing imports re, collections, functools: not on the run path
    from typing import Any

DEFAULT_CACHE = os.environ.get("PALLET_RUNTIME_SECCOMP_CACHE", "/var/cache/pallet-runtime/seccomp")
DATA = os.path.join(os.path.dirname(__file__), "data", "seccomp_default.json")

# Docker's arch names (GOARCH-like) for the rules' "arches"
_NATIVE = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
           "s390x": ("s390x", "SCMP_ARCH_S390X"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64")}
_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
            "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
            "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
           "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_ARM": 0x40000028, "SCMP_ARCH_S390X": 0x80000016,
           "SCMP_ARCH_S390": 0x00000016, "SCMP_ARCH_RISCV64": 0xC00000F3}


def _kernel() -> tuple[int, ...]:
    rel = os.uname().release.split("-")[0]
    return tuple(int(x) for x in rel.split(".")[:2] if x.isdigit())


def _matches(cond: dict | None, caps: set[str], arch: str, want: bool) -> bool:
    """``includes`` (want=True: all listed conditions hold) / ``excludes`` (want=False: none holds)."""
    if not cond:
        return True
    hits = []
    if cond.get("caps"):
        hits.append(any(c in caps for c in cond["caps"]) if not want else all(c in caps for c in cond["caps"]))
    if cond.get("arches"):
        hits.append(arch in cond["arches"])
    if cond.get("minKernel"):
        need = tuple(int(x) for x in str(cond["minKernel"]).split(".")[:2])
        hits.append(_kernel() >= need)
    return all(hits) if want else not any(hits)


def from_docker_profile(profile: dict, caps: list[str] | set[str], machine: str | None = None) -> dict:
    """Evaluate a Docker-format profile for the container's (bounding) ``caps``: the OCI form."""
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidArgument("seccomp profile: missing defaultAction")
    machine = machine or os.uname().machine
    arch, scmp_arch = _NATIVE.get(machine, (machine, ""))
    capset = set(caps)
    archs: list[str] = list(profile.get("architectures") or [])
    for m in profile.get("archMap") or ():
        if m.get("architecture") == scmp_arch:
            archs = [scmp_arch, *(m.get("subArchitectures") or [])]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": archs, "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for rule in profile.get("syscalls") or ():
        if not (_matches(rule.get("includes"), capset, arch, True)
                and _matches(rule.get("excludes"), capset, arch, False)):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        r: dict[str, Any] = {"names": names, "action": rule["action"]}
        for k in ("errnoRet", "args"):
            if rule.get(k) is not None:
                r[k] = rule[k]
        out["syscalls"].append(r)
    return out


def default_profile() -> dict:
    """Docker's default profile, in Docker's format."""
    return jsonlite.load_file(DATA)  # type: ignore[no-any-return]


def load_profile(path: str) -> dict:
    """A ``--security-opt seccomp=PROFILE.json`` file (Docker's format)."""
    try:
        return jsonlite.load_file(path, f"seccomp profile {path}")  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise InvalidArgument(f"seccomp profile {path} does not exist") from None


def _action(name: str, errno_ret: int | None, default_errno: int) -> int:
    if name not in _ACTIONS:
        raise InvalidArgument(f"seccomp: unknown action {name!r}")
    a = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        a |= (errno_ret if errno_ret is not None else default_errno) & 0xFFFF
    return a


def compile_bpf(seccomp: dict) -> bytes:
    """Compile the OCI ``linux.seccomp`` object to classic BPF with libseccomp."""
    try:
        import pyseccomp  # the one heavy import, only on a cache miss
    except ImportError:
        import site  # started with -S (the pallet-runtime wrapper): add site-packages now

        site.main()
        try:
            import pyseccomp
        except ImportError:
            raise NotImplementedFeature("seccomp needs pyseccomp (libseccomp) to compile a new profile") from None
    import tempfile

    default_errno = int(seccomp.get("defaultErrnoRet", 1))
    f = pyseccomp.SyscallFilter(_action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"), 1))
    for a in seccomp.get("architectures") or ():
        code = _ARCHES.get(a)
        if code is None:
            raise InvalidArgument(f"seccomp: unknown architecture {a!r}")
        if not f.exist_arch(code):
            try:
                f.add_arch(code)
            except OSError:
                pass
    for rule in seccomp.get("syscalls") or ():
        action = _action(rule["action"], rule.get("errnoRet"), default_errno)
        args = [pyseccomp.Arg(a["index"], _OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                for a in rule.get("args") or ()]
        for name in rule.get("names") or ():
            try:
                f.add_rule(action, name, *args)
            except (OSError, ValueError, RuntimeError):
                continue  # unknown to this libseccomp/arch, or equal to the default action
    with tempfile.TemporaryFile() as tf:
        f.export_bpf(tf)
        tf.seek(0)
        return tf.read()  # type: ignore[no-any-return]


def bpf_for(seccomp: dict, cache_dir: str | None = None) -> bytes:
    """The BPF for an OCI ``linux.seccomp``, from the cache or compiled and cached (atomic)."""
    cache_dir = cache_dir or DEFAULT_CACHE
    key = _sha256.sha256((os.uname().machine + jsonlite.dumps(seccomp)).encode()).hexdigest()
    path = f"{cache_dir}/{key}.bpf"
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        pass
    bpf = compile_bpf(seccomp)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(bpf)
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return bpf
