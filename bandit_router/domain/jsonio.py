"""Compact JSON of the records the hot paths write and read (a Route's decision, a Reward's event, the gateway's
metered call), through orjson: three to four times faster than the json module on them.

orjson writes non-ASCII text as UTF-8 rather than as escapes, and cannot read the ``NaN`` that the json module
writes for a non-finite float: ``loads`` falls back to the json module for such text (records written before, or
by another version). The records hold finite numbers only; their constructors and the request checks see to it.

>>> loads(dumps({"model": "m", "p": [0.25, 0.75], "note": "café"}))
{'model': 'm', 'p': [0.25, 0.75], 'note': 'café'}
>>> loads('{"x": NaN}')["x"] != 0
True
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
