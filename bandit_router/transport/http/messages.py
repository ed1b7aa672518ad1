"""What a chat or completion request asks of the router: the model name's trade-off, the text routed on, and the
conversation it belongs to."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bandit_router.transport.http.body import Body
from bandit_router.transport.http.errors import invalid

ROUTER_MODEL = "bandit-router"
CONVERSATION_HEADER = "x-bandit-router-conversation"
_WEIGHT_KEYS = {"energy": "energy_weight", "cost": "cost_weight"}


def parse_router_model(name: str) -> dict[str, float] | None:
    """The preferences ``model`` carries (``bandit-router:energy=0.5,cost=0.1``); None when it names no router."""
    if name == ROUTER_MODEL:
        return {}
    if not name.startswith(ROUTER_MODEL + ":"):
        return None
    rule = "must be bandit-router or bandit-router:energy=W,cost=W (either or both, W a number >= 0)"
    weights: dict[str, float] = {}
    for part in name.removeprefix(ROUTER_MODEL + ":").split(","):
        key, _, value = part.partition("=")
        if key.strip() not in _WEIGHT_KEYS or _WEIGHT_KEYS[key.strip()] in weights:
            raise invalid("model", rule, name)
        try:
            weights[_WEIGHT_KEYS[key.strip()]] = float(value)
        except ValueError:
            raise invalid("model", rule, name) from None
    return weights


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _messages(body: Body) -> list[dict[str, Any]]:
    messages = body.raw.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise invalid("messages", "must be a non-empty list of message objects", messages)
    return messages


def query_of(body: Body, chat: bool, max_chars: int) -> str:
    """What is routed on: a chat's user messages so far, in order (its opening first, so a closing "Thanks." is
    routed on what the conversation is about), up to ``max_chars``; or a completion's prompt."""
    if chat:
        messages = _messages(body)
        users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        if not users or not users[-1].strip():
            raise invalid("messages", "must hold a user message with text content", f"{len(messages)} messages")
        if len(users) == 1:
            return users[0]
        return "\n\n".join(u for u in users if u.strip())[:max_chars]
    prompt = body.raw.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return str(prompt[0])
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt", "must be a non-empty string (or list of strings)", prompt)
    return prompt


def conversation_of(request: web.Request, body: Body, chat: bool) -> tuple[str, str, bool] | None:
    """The conversation a request belongs to, as (explicit id, opening, whether it has earlier turns); None for a
    completion without an explicit id. An explicit id comes from the ``x-bandit-router-conversation`` header or
    the body's ``conversation_id``; the opening is the system prompt and the first user message, which every later
    turn of a chat repeats."""
    explicit = request.headers.get(CONVERSATION_HEADER, "") or body.text("conversation_id")
    if not chat:
        return (explicit, "", True) if explicit else None
    messages = _messages(body)
    system = [_text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    first = next((_text_of(m.get("content")) for m in messages if m.get("role") == "user"), "")
    earlier = any(m.get("role") == "assistant" for m in messages)
    return explicit, json.dumps([system, first]), earlier or bool(explicit)
