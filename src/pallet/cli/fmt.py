"""Output helpers shared by verbs: docker's human sizes and durations (go-units), aligned
tables, ``--format json`` and a small Go-template subset (``{{.Field}}``, ``{{json .}}``,
``table`` prefix, ``\\t``) for list verbs (``render``) and nested ``{{.A.B}}``/``{{json .A}}``
for inspect (``template``).

JSON is printed as docker's CLI prints it (``go_json``): compact, UTF-8 as is, U+2028/U+2029
escaped; ``<``, ``>``, ``&`` escaped as ``\\u003c`` ``\\u003e`` ``\\u0026`` only where docker's
goes through ``json.Marshal`` (a list verb's whole row: ``{{json .}}``, ``--format json``),
not in its template ``json`` function (``SetEscapeHTML(false)``: ``{{json .Config}}``). Plain
``{{.X}}`` of a list or map prints as Go's ``fmt`` does: ``[a b]``, ``map[k:v]``."""
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


# an argument that was not UTF-8 (surrogate-escaped by Python): docker's CLI sends, and so stores
# and prints, U+FFFD in its place (Go's encoding/json)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_escape(text: str) -> str:
    """JSON text as Go's encoding/json leaves it: lone surrogates as U+FFFD, U+2028/U+2029 escaped."""
    return _SURROGATE.sub("\ufffd", text).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _row_json(o: dict[str, Any]) -> str:
    """A row as docker's CLI marshals it (a map: keys sorted, HTML escaped)."""
    return go_json(dict(sorted(o.items())), escape_html=True)


def go_json(v: Any, *, escape_html: bool = False) -> str:
    """``v`` as Go's encoding/json writes it (docker's CLI templates): no spaces, non-ASCII as
    UTF-8, U+2028/U+2029 escaped, floats in Go's shortest form (``2``, ``0.5``, ``1e-7``,
    ``1e+21``); ``escape_html``: ``<``, ``>``, ``&`` as ``json.Marshal`` escapes them."""
    out = _go_escape(_json(v))
    if escape_html:  # these characters only occur inside strings in JSON text
        out = out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return out


def _json(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(_str(k) + ":" + _json(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_json(x) for x in v) + "]"
    if isinstance(v, float) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
        return _go_float(v)
    return json.dumps(v, ensure_ascii=False)


def _str(k: Any) -> str:
    return json.dumps(k if isinstance(k, str) else str(k), ensure_ascii=False)


def _go_float(f: float) -> str:
    """Go's encoding/json float64: shortest digits, 'f' form unless |f| < 1e-6 or >= 1e21, then
    'e' with ``e-07`` cleaned to ``e-7`` (``2``, ``0.5``, ``1e-7``, ``1e+21``)."""
    from decimal import Decimal

    if f == 0:
        return "0" if str(f)[0] != "-" else "-0"
    d = Decimal(repr(f)).normalize()
    if 1e-6 <= abs(f) < 1e21:
        return format(d, "f")
    sign, digits, exp = d.as_tuple()
    e10 = len(digits) + int(exp) - 1  # the exponent of the first digit
    mant = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{'-' if e10 < 0 else '+'}{abs(e10) if e10 < 0 else f'{e10:02d}'}"


def go_text(v: Any) -> str:
    """``v`` as text/template prints a value decoded from JSON (fmt's %v): strings as they are,
    ``true``/``false``, ``[a b]``, ``map[k:v]`` (keys sorted), ``<nil>`` inside, and ``<no value>``
    for a missing or null field."""
    return "<no value>" if v is None else _SURROGATE.sub("\ufffd", _text(v))


def _text(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):  # docker's inspect fields are integers where ours may be a float
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else _go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_text(v[k])}" for k in sorted(v, key=str)) + "]"
    return str(v)


def template(text: str, obj: Any) -> str:
    """The Go-template subset of ``inspect -f``: ``{{.A.B}}``, ``{{json .A}}``, ``{{json .}}``,
    text around them, ``\\n``/``\\t``. A missing field prints ``<no value>``."""
    def ev(path: str) -> Any:
        v = obj
        for part in [p for p in path.split(".") if p]:
            if not isinstance(v, dict):
                return None
            v = v.get(part)
        return v

    def sub(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json ") and expr[5:].strip().startswith("."):
            return go_json(ev(expr[5:].strip()))
        if not expr.startswith("."):
            raise InvalidArgument(f"unsupported template expression {{{{{expr}}}}}")
        return go_text(ev(expr))

    return re.sub(r"\{\{(.*?)\}\}", sub, text.replace("\\n", "\n").replace("\\t", "\t"))


def inspect_text(text: str | None, objs: Sequence[Any]) -> str:
    """What ``inspect [--format TEXT]`` prints: without a format, the array indented by 4 (UTF-8 as
    is, as docker's); ``json`` -> the array, compact, on one line (docker >= 23); else the template
    once per object, a line each."""
    if not text:
        return _go_escape(json.dumps(list(objs), indent=4, ensure_ascii=False))
    if text.strip() == "json":
        return go_json(list(objs))
    return "\n".join(template(text, o) for o in objs)


_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z0-9_]*)\s*}}")


def render(template: str, objs: Sequence[dict[str, Any]], headers: dict[str, str] | None = None) -> str:
    """``json`` -> one JSON object per line (docker's ``--format json``); otherwise a template.
    A ``table`` prefix prints a header row of the field names (``headers`` maps a field to the
    verb's own column name, e.g. ps's ``ID`` -> ``CONTAINER ID``)."""
    if template.strip() == "json":  # docker's rows are maps (MarshalJSON): keys sorted, HTML escaped
        return "\n".join(_row_json(o) for o in objs)
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
            if m.group(1) and not m.group(2):  # {{json .}}: the row, as --format json
                return _row_json(o)
            v: Any = o.get(m.group(2), "")
            if m.group(1):
                return go_json(v)
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
