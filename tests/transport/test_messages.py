"""What a chat request is routed on, and which conversation it belongs to."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from bandit_router.transport.http.body import Body
from bandit_router.transport.http.errors import ApiError
from bandit_router.transport.http.messages import conversation_of, query_of

SYSTEM = {"role": "system", "content": "You are terse."}


def chat(*turns: tuple[str, str]) -> Body:
    return Body({"messages": [SYSTEM, *({"role": r, "content": c} for r, c in turns)]})


def test_a_later_turn_is_routed_on_the_conversation_so_far_opening_first() -> None:
    body = chat(("user", "Solve 37 * 41."), ("assistant", "1517."), ("user", "Thanks."))
    assert query_of(body, True, 10_000) == "Solve 37 * 41.\n\nThanks."
    assert query_of(body, True, 8) == "Solve 37"
    # A first turn is its own message, unclipped (an over-long one is refused by Route's own rule).
    assert query_of(chat(("user", "x" * 50)), True, 8) == "x" * 50


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"messages": []}, r"messages must be a non-empty list of message objects"),
        ({"messages": [SYSTEM, {"role": "assistant", "content": "Hi."}]}, r"messages must hold a user message"),
        ({"messages": [SYSTEM, {"role": "user", "content": "  "}]}, r"messages must hold a user message"),
    ],
)
def test_a_chat_without_a_user_message_is_refused(body: dict[str, Any], match: str) -> None:
    with pytest.raises(ApiError, match=match):
        query_of(Body(body), True, 100)


def test_every_turn_of_a_chat_names_the_same_conversation_and_an_explicit_id_wins() -> None:
    request = make_mocked_request("POST", "/v1/chat/completions")
    first = conversation_of(request, chat(("user", "Write a poem.")), True)
    later = conversation_of(request, chat(("user", "Write a poem."), ("assistant", "Roses."), ("user", "More.")), True)
    assert first is not None and later is not None
    assert first[1] == later[1] == json.dumps([["You are terse."], "Write a poem."])
    assert (first[2], later[2]) == (False, True)  # the first turn has no earlier turns to look up
    named = make_mocked_request("POST", "/", headers={"x-bandit-router-conversation": "c-7"})
    assert conversation_of(named, chat(("user", "Write a poem.")), True) == ("c-7", first[1], True)
    assert conversation_of(request, Body({"prompt": "x", "conversation_id": "c-8"}), False) == ("c-8", "", True)
    assert conversation_of(request, Body({"prompt": "x"}), False) is None
