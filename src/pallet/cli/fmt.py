"""Output helpers shared by verbs: docker's human sizes and durations (go-units), aligned
tables, ``--format json`` and a small Go-template subset (``{{.Field}}``, ``{{json .}}``,
``table`` prefix, ``\\t``)."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from pallet.engine.units import human_duration
from pallet.errors import InvalidArgument

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _size(n: float, base: int, units: tuple[str, ...]) -> str:
    """go-units' CustomSize: 4 significant digits, trailing zeros trimmed."""
    i = 0
    v = float(n)
    while v >= base and i < len(units) - 1:
        v /= base
        i += 1
    s = f"{v:.4g}"
    if "e" in s:
        s = f"{v:.0f}"
    return f"{s}{units[i]}"


def human_size(n: float) -> str:
    """go-units HumanSize: decimal units ("4.26MB", "290MB")."""
    return _size(n, 1000, _DECIMAL)


def binary_size(n: float) -> str:
    """go-units BytesSize: binary units ("796KiB", "23.54GiB"): docker stats' memory."""
    return _size(n, 1024, _BINARY)


def ago(epoch: float) -> str:
    if not epoch:
        return "N/A"
    return human_duration(time.time() - epoch) + " ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """docker's tabwriter (minwidth 10, padding 3): each column as wide as its widest cell
    plus 3, and at least 10."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = []
    for r in [list(headers)] + [list(x) for x in rows]:
        cells = [c.ljust(max(10, widths[i] + 3)) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z0-9_]*)\s*}}")


def render(template: str, objs: Sequence[dict[str, Any]], headers: dict[str, str] | None = None) -> str:
    """``json`` -> one JSON object per line (docker's ``--format json``); otherwise a template.
    A ``table`` prefix prints a header row of the field names (``headers`` maps a field to the
    verb's own column name, e.g. ps's ``ID`` -> ``CONTAINER ID``)."""
    if template.strip() == "json":
        return "\n".join(json.dumps(o, separators=(",", ":")) for o in objs)
    tpl = template.replace("\\t", "\t").replace("\\n", "\n")
    header = tpl.startswith("table")
    if header:
        tpl = tpl[len("table"):].lstrip()
    names = [m.group(2) for m in _FIELD.finditer(tpl)]
    if objs:
        for n in names:
            if n and n not in objs[0]:
                raise InvalidArgument(f"template: can't evaluate field {n}")
    if "{{" in _FIELD.sub("", tpl):
        raise InvalidArgument(f"unsupported template {template!r}: only {{{{.Field}}}} and {{{{json .}}}}")

    def one(o: dict[str, Any]) -> str:
        def sub(m: re.Match[str]) -> str:
            v: Any = o if not m.group(2) else o.get(m.group(2), "")
            if m.group(1):
                return json.dumps(v, separators=(",", ":"))
            return "" if v is None else str(v)

        return _FIELD.sub(sub, tpl)

    out = [one(o) for o in objs]
    if header:
        head = _FIELD.sub(lambda m: (headers or {}).get(m.group(2)) or _header_name(m.group(2)), tpl)
        rows = [head] + out
        if "\t" in tpl:
            split = [r.split("\t") for r in rows]
            return table(split[0], split[1:])
        return "\n".join(rows)
    return "\n".join(out)


def _header_name(field: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field).upper() if field != "ID" else "IMAGE ID"
