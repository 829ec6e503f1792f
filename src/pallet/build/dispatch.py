"""What each metadata instruction does to the container config, and the ``created_by`` text
docker's legacy builder writes for it (builder/dockerfile/dispatchers.go), so ``pallet history``
reads like ``docker history``. Pure functions on dicts; no I/O.
"""
from __future__ import annotations

import json
import posixpath
import re
import signal
from typing import Any

from pallet.build import instructions as ins
from pallet.errors import InvalidArgument

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
_ORDER = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
          "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
          "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
          "StopTimeout", "Shell")


def ordered(cfg: dict[str, Any]) -> dict[str, Any]:
    """Docker's key order; empty values dropped (docker writes them as ""/null/false)."""
    out = {k: cfg[k] for k in _ORDER if k in cfg and cfg[k] not in (None, "", False, {}, [])}
    for k, v in cfg.items():
        if k not in out and k not in _ORDER and v not in (None, "", False):
            out[k] = v
    return out


def shell_of(cfg: dict[str, Any]) -> list[str]:
    return list(cfg.get("Shell") or DEFAULT_SHELL)


def now() -> str:
    """RFC 3339 UTC with nanosecond digits, as docker writes ``created``."""
    import datetime as _dt

    t = _dt.datetime.now(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def history_entry(created_by: str, *, empty: bool, comment: str = "", author: str = "",
                  created: str | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {"created": created or now(), "created_by": created_by}
    if author:
        h["author"] = author
    if comment:
        h["comment"] = comment
    if empty:
        h["empty_layer"] = True
    return h


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(x) for x in items) + "]"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    neg, ns = ns < 0, abs(ns)
    if ns < 10**9:
        for unit, div in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= div:
                return ("-" if neg else "") + _trim(ns / div) + unit
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    s = _trim(rem / 10**9) + "s"
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + s
    return ("-" if neg else "") + out


def _trim(x: float) -> str:
    t = f"{x:.9f}".rstrip("0").rstrip(".")
    return t or "0"


def _go_rune(n: int) -> str:
    if 32 <= n < 127 and chr(n) not in "'\\":
        return f"'{chr(n)}'"
    if n < 0x80:
        return f"'\\x{n:02x}'"
    return f"'\\u{n:04x}'"


def set_env(cfg: dict[str, Any], key: str, value: str) -> None:
    env = list(cfg.get("Env") or [])
    for i, e in enumerate(env):
        if e.split("=", 1)[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env


def env_map(cfg: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in cfg.get("Env") or []:
        k, _, v = e.partition("=")
        out.setdefault(k, v)
    return out


def begin_stage(base: dict[str, Any] | None) -> dict[str, Any]:
    cfg = json.loads(json.dumps(base or {}))
    if not any(e.startswith("PATH=") for e in cfg.get("Env") or []):
        cfg["Env"] = list(cfg.get("Env") or []) + ["PATH=" + DEFAULT_PATH]
    cfg.pop("OpenStdin", None)
    cfg.pop("StdinOnce", None)
    return cfg


def _ports(spec: str) -> list[str]:
    num, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    lo, _, hi = num.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise InvalidArgument(f"invalid containerPort: {num}")
    if not hi:
        return [f"{int(lo)}/{proto}"]
    if int(hi) < int(lo):
        raise InvalidArgument(f"invalid range specified for the Port: {num}")
    return [f"{p}/{proto}" for p in range(int(lo), int(hi) + 1)]


def _check_signal(sig: str) -> None:
    s = sig.upper()
    if s.isdigit():
        if int(s) == 0:
            raise InvalidArgument(f"Invalid signal: {sig}")
        return
    name = s if s.startswith("SIG") else "SIG" + s
    if re.fullmatch(r"SIGRTMIN(\+\d+)?|SIGRTMAX(-\d+)?", name):
        return
    if not hasattr(signal.Signals, name) and name not in ("SIGIOT", "SIGPOLL", "SIGCLD", "SIGUNUSED"):
        raise InvalidArgument(f"Invalid signal: {sig}")


def apply(cfg: dict[str, Any], inst: ins.Instruction, *, cmd_set: bool) -> str:
    """Apply a metadata-only instruction (already expanded) to ``cfg`` in place; returns the
    history ``created_by``."""
    nop = " ".join(shell_of(cfg)) + " #(nop)  "
    if isinstance(inst, ins.Env):
        for k, v in inst.pairs:
            set_env(cfg, k, v)
        return nop + "ENV " + " ".join(f"{k}={v}" for k, v in inst.pairs)
    if isinstance(inst, ins.Label):
        labels = dict(cfg.get("Labels") or {})
        for k, v in inst.pairs:
            labels[k] = v
        cfg["Labels"] = labels
        return nop + "LABEL " + " ".join(f"{k}={v}" for k, v in inst.pairs)
    if isinstance(inst, ins.Maintainer):
        return nop + "MAINTAINER " + inst.value
    if isinstance(inst, ins.Expose):
        ports = dict(cfg.get("ExposedPorts") or {})
        for p in inst.values:
            for key in _ports(p):
                ports[key] = {}
        cfg["ExposedPorts"] = ports
        return nop + "EXPOSE " + " ".join(sorted(inst.values))   # docker sorts them
    if isinstance(inst, ins.Volume):
        vols = dict(cfg.get("Volumes") or {})
        for v in inst.values:
            if not v.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        cfg["Volumes"] = vols
        return nop + "VOLUME [" + " ".join(inst.values) + "]"
    if isinstance(inst, ins.User):
        cfg["User"] = inst.value
        return nop + "USER " + inst.value
    if isinstance(inst, ins.StopSignal):
        _check_signal(inst.value)
        cfg["StopSignal"] = inst.value
        return nop + "STOPSIGNAL " + inst.value
    if isinstance(inst, ins.Healthcheck):
        hc: dict[str, Any] = {"Test": inst.test}
        for key, val in (("Interval", inst.interval), ("Timeout", inst.timeout),
                         ("StartPeriod", inst.start_period), ("StartInterval", inst.start_interval),
                         ("Retries", inst.retries)):
            if val:
                hc[key] = val
        cfg["Healthcheck"] = hc
        text = (f"&{{{go_quote_list(inst.test)} {go_quote(go_duration(inst.interval))} "
                f"{go_quote(go_duration(inst.timeout))} {go_quote(go_duration(inst.start_period))} "
                f"{_go_rune(inst.retries)}}}")
        return nop + "HEALTHCHECK " + text
    if isinstance(inst, ins.Shell):
        cfg["Shell"] = list(inst.shell)
        return " ".join(inst.shell) + " #(nop)  SHELL [" + " ".join(inst.shell) + "]"
    if isinstance(inst, ins.Onbuild):
        cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [inst.expression]
        return nop + "ONBUILD " + inst.expression
    if isinstance(inst, ins.Cmd):
        cmd = shell_of(cfg) + inst.args if inst.prepend_shell else list(inst.args)
        cfg["Cmd"] = cmd
        return nop + "CMD " + go_quote_list(cmd)
    if isinstance(inst, ins.Entrypoint):
        ep = shell_of(cfg) + inst.args if inst.prepend_shell and inst.args else list(inst.args)
        cfg["Entrypoint"] = ep
        if not cmd_set:
            cfg.pop("Cmd", None)
        return nop + "ENTRYPOINT " + go_quote_list(ep)
    if isinstance(inst, ins.Arg):
        return nop + "ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in inst.pairs)
    raise InvalidArgument(f"{inst.name} is not a metadata instruction")  # pragma: no cover


def workdir(cfg: dict[str, Any], path: str) -> tuple[str, str]:
    """New WorkingDir and its created_by; returns the cleaned path (what the filesystem sees).
    Docker keeps an absolute path as written (``/tmp/`` stays ``/tmp/`` in the config and the
    history) and joins + cleans a relative one onto the previous directory."""
    wd = path if path.startswith("/") else clean_dir(posixpath.join(cfg.get("WorkingDir") or "/", path))
    cfg["WorkingDir"] = wd
    return clean_dir(wd), " ".join(shell_of(cfg)) + " #(nop) WORKDIR " + wd


def clean_dir(path: str) -> str:
    """Go's filepath.Clean of an absolute path (``//x/./y/../z/`` -> ``/x/z``)."""
    wd = posixpath.normpath("/" + path)
    return "/" + wd.lstrip("/")


def run_args(cfg: dict[str, Any], inst: ins.Run) -> list[str]:
    return shell_of(cfg) + inst.args if inst.prepend_shell else list(inst.args)


def run_created_by(args: list[str], build_args: dict[str, str]) -> str:
    """``|N K=V ... cmd``: docker records the build args a RUN saw (sorted) before its command."""
    if build_args:
        pre = [f"|{len(build_args)}"] + sorted(f"{k}={v}" for k, v in build_args.items())
        return " ".join(pre + args)
    return " ".join(args)
