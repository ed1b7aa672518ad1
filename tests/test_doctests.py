"""The runnable examples in the docstrings of the public policy and serving objects run, and say what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from bandit_router.embedding import recent
from bandit_router.observability import timing
from bandit_router.offline.replay import position
from bandit_router.policy import hierarchy
from bandit_router.serving import breakers


@pytest.mark.parametrize("module", [breakers, hierarchy, position, recent, timing], ids=lambda m: m.__name__)
def test_the_docstring_examples_run(module: ModuleType) -> None:
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
