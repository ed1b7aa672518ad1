"""Shallow field dicts of the domain's records, for JSON: without dataclasses.asdict's deep copies, which cost
more than the rest of a Route (the records hold plain values and tuples or lists of them, never records)."""

from __future__ import annotations

import dataclasses
from typing import Any


def shallow(record: Any) -> dict[str, Any]:
    """``record``'s fields by name, values as they are (the caller copies what it changes in place).

    >>> @dataclasses.dataclass(frozen=True)
    ... class Point:
    ...     x: int
    ...     tags: tuple[str, ...] = ()
    >>> shallow(Point(1, ("a",)))
    {'x': 1, 'tags': ('a',)}
    """
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
