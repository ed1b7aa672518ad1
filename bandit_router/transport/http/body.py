"""Reading a JSON request body field by field: a field of the wrong type is refused with its name, rule and value."""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import zlib
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.web_protocol import RequestPayloadError

from bandit_router.domain.requests import UNSAFE_TEXT
from bandit_router.transport.http.errors import ApiError, invalid

# Bytes without which a body cannot hold such a character (an escape, a NUL, or the UTF-8 lead byte of
# U+D000-U+DFFF, which json.loads decodes with surrogatepass): the strings are searched only where one occurs.
_MAY_BE_UNSAFE = (b"\\u", b"\x00", b"\xed")


# How long a request's body may take to arrive once its head has (http.body_timeout_s), kept on the app.
BODY_TIMEOUT_S = web.AppKey("body_timeout_s", float)


async def read_object(request: web.Request) -> Body:
    """The request's body as a JSON object whose every string is text the router can carry."""
    if request.content_type != "application/json":
        raise invalid("Content-Type", "must be application/json", request.content_type)
    timeout = request.app.get(BODY_TIMEOUT_S)
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            f"body must arrive within http.body_timeout_s ({timeout:g} s) of its head",
            param="body",
            code="body_timeout",
        ) from None
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"body must fit http.max_body_bytes: {exc.text}", param="body", code="too_large") from None
    except (RequestPayloadError, ClientPayloadError, zlib.error) as exc:
        # A body that does not decode as its Content-Encoding says (gzip that is not gzip).
        encoding = request.headers.get("Content-Encoding", "identity")
        raise invalid("body", f"must be encoded as its Content-Encoding ({encoding}) says", str(exc)) from None
    try:
        parsed = json.loads(raw)
    except RecursionError:
        raise invalid("body", "must nest arrays and objects at most about 900 levels deep", "deeper") from None
    except ValueError as exc:  # not JSON, not UTF-8, or a number too long to convert (Python's 4,300 digits)
        raise invalid("body", "must be valid JSON", str(exc)[:200]) from None
    if not isinstance(parsed, dict):
        raise invalid("body", "must be a JSON object", type(parsed).__name__)
    if any(marker in raw for marker in _MAY_BE_UNSAFE):
        try:
            _check_text(parsed, "")
        except RecursionError:  # nested as deep as the parser allowed, from a deeper stack
            raise invalid("body", "must nest arrays and objects at most about 900 levels deep", "deeper") from None
    return Body(parsed)


def _check_text(value: Any, path: str) -> None:
    """Refuses a string (key or value, at any depth) with a character the router cannot carry, naming where."""
    if isinstance(value, str):
        found = UNSAFE_TEXT.search(value)
        if found is not None:
            char = found.group()
            what = "NUL" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
            raise invalid(path or "body", f"must be text without NUL or lone surrogates, found {what}", value[:64])
    elif isinstance(value, dict):
        for key, item in value.items():
            if UNSAFE_TEXT.search(key):
                _check_text(key, f"{path or 'body'} (a key)")
            _check_text(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{path}[{i}]")


def unknown(
    fields: Collection[str], known: Collection[str], where: str, prefix: str = "", raw: Mapping[str, Any] | None = None
) -> None:
    """Refuses the first of ``fields`` not in ``known``: ``candidate is not a field of /v1/route (did you mean
    candidates? known: ...)``."""
    for field in fields:
        if field in known:
            continue
        close = difflib.get_close_matches(field, list(known), n=1, cutoff=0.75)
        hint = f"did you mean {prefix}{close[0]}? " if close else ""
        value = raw.get(field) if raw is not None else field
        rule = f"is not a field of {where} ({hint}known: {', '.join(sorted(known))})"
        raise invalid(prefix + field, rule, value)


class Body:
    """A JSON object's fields, checked as they are read; ``prefix`` names nested fields (``budget.max_cost_usd``)."""

    def __init__(self, raw: Mapping[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def _name(self, field: str) -> str:
        return self.prefix + field

    def only(self, known: Collection[str], where: str) -> None:
        """Refuses a field outside ``known`` (misspelled or misplaced), naming it and the known ones."""
        unknown(self.raw, known, where, self.prefix, self.raw)

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
