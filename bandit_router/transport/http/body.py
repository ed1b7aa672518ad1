"""Reading a JSON request body field by field: a field of the wrong type is refused with its name, rule and value."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bandit_router.transport.http.errors import ApiError, invalid


async def read_object(request: web.Request) -> Body:
    """The request's body as a JSON object."""
    if request.content_type != "application/json":
        raise invalid("Content-Type", "must be application/json", request.content_type)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"body must fit http.max_body_bytes: {exc.text}", param="body", code="too_large") from None
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid("body", "must be valid JSON", str(exc)) from None
    if not isinstance(parsed, dict):
        raise invalid("body", "must be a JSON object", type(parsed).__name__)
    return Body(parsed)


class Body:
    """A JSON object's fields, checked as they are read; ``prefix`` names nested fields (``budget.max_cost_usd``)."""

    def __init__(self, raw: Mapping[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def _name(self, field: str) -> str:
        return self.prefix + field

    def has(self, field: str) -> bool:
        return self.raw.get(field) is not None

    def text(self, field: str, default: str = "") -> str:
        value = self.raw.get(field, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise invalid(self._name(field), "must be a string", value)
        return value

    def number(self, field: str) -> float | None:
        value = self.raw.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise invalid(self._name(field), "must be a finite number", value)
        return float(value)

    def integer(self, field: str) -> int:
        value = self.raw.get(field, 0)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(self._name(field), "must be an integer", value)
        return value

    def flag(self, field: str) -> bool:
        value = self.raw.get(field, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise invalid(self._name(field), "must be true or false", value)
        return value

    def texts(self, field: str) -> tuple[str, ...]:
        value = self.raw.get(field, [])
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(self._name(field), "must be a list of strings", value)
        return tuple(value)

    def mapping(self, field: str) -> dict[str, str]:
        value = self.raw.get(field, {})
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise invalid(self._name(field), "must be an object of strings", value)
        return dict(value)

    def object(self, field: str) -> Body:
        value = self.raw.get(field, {})
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise invalid(self._name(field), "must be an object", value)
        return Body(value, f"{self._name(field)}.")
