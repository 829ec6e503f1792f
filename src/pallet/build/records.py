"""A light stand-in for ``dataclasses`` on the build's hot path.

``@dataclass`` costs ~1-5 ms per class at import (it compiles ``__init__``/``__repr__``/``__eq__``
with ``exec``); the parser defines ~25 record classes, which made a fully cached ``pallet build``
spend most of its time importing. ``record`` builds the same keyword/positional ``__init__``
(defaults, ``field(default_factory=...)``), ``__repr__`` and ``__eq__`` generically, once per
class, without compiling code. ``replace(obj, **changes)`` is ``dataclasses.replace``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")
_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    return _Factory(default_factory)


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            if name not in names:
                names.append(name)
            if name in klass.__dict__:
                defaults[name] = klass.__dict__[name]
            elif name in klass.__dict__.get("_record_defaults", {}):
                defaults[name] = klass.__dict__["_record_defaults"][name]
    for name, d in defaults.items():
        if isinstance(d, _Factory) and name in cls.__dict__:
            delattr(cls, name)
    fields = tuple(names)

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, got {len(args)}")
        for name, value in zip(fields, args, strict=False):
            setattr(self, name, value)
        for name in fields[len(args):]:
            if name in kw:
                setattr(self, name, kw.pop(name))
                continue
            d = defaults.get(name, _MISSING)
            if d is _MISSING:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            setattr(self, name, d.make() if isinstance(d, _Factory) else d)
        if kw:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kw)}")

    def __repr__(self: Any) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in fields) + ")"

    def __eq__(self: Any, other: object) -> bool:
        return type(self) is type(other) and all(getattr(self, n) == getattr(other, n) for n in fields)

    cls.__init__ = __init__  # type: ignore[misc,method-assign]
    cls.__repr__ = __repr__  # type: ignore[method-assign]
    cls.__eq__ = __eq__  # type: ignore[method-assign]
    cls.__hash__ = None  # type: ignore[assignment]
    cls._fields = fields  # type: ignore[attr-defined]
    cls._record_defaults = dict(defaults)  # type: ignore[attr-defined]
    return cls


def replace(obj: T, **changes: Any) -> T:
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new
