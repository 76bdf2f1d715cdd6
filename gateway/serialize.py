"""The one JSON form of the value types: spool metadata, reports, store columns, CLI and watch
reports all go through pydantic here instead of hand-written ``asdict``/``to_json`` code, so a
field added to a dataclass is serialized (and read back) everywhere at once.

Enums become their values, tuples lists, nested dataclasses objects. No value type holds a set,
so the order of every list is the order of the data."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def plain(value: Any) -> Any:
    """JSON-ready builtins (dict/list/str/int/float/bool/None) for any value type."""
    return _ANY.dump_python(value, mode="json")


def dumps(value: Any) -> bytes:
    """One line of ASCII JSON: non-ASCII and line separators are escaped, so a value written
    as a header line stays one line whatever names it carries."""
    return json.dumps(plain(value), ensure_ascii=True).encode("ascii")


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def load(cls: type[T], data: Any) -> T:
    """A value type back from its plain form (types checked and coerced by pydantic)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:  # building one costs ~1 ms: once per type
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    value: T = adapter.validate_python(data)
    return value
