"""Model and policy colours: distinct for up to 16 models, and the same for a model in every set it is in."""

from __future__ import annotations

import itertools
import math

from bandit_router.config import load_config
from bandit_router.observability.colours import PALETTE, model_colours, policy_colour
from bandit_router.traffic.format import reference_models


def lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* of an sRGB hex colour (D65)."""

    def linear(c: float) -> float:
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_the_palette_has_sixteen_colours_told_apart_at_a_glance() -> None:
    assert len(set(PALETTE)) == 16
    closest = min(math.dist(lab(a), lab(b)) for a, b in itertools.combinations(PALETTE, 2))
    assert closest > 25, closest


def test_sixteen_models_get_sixteen_colours_and_a_model_keeps_its_colour_across_sets() -> None:
    shipped = [m.id for m in load_config(env={}).models]
    reference = list(reference_models())
    everyone = [*[*shipped, *reference][:14], "acme-api", "my-fine-tune"]
    colours = model_colours(everyone)
    assert len(set(colours.values())) == 16
    # The shipped models look the same in a report of any subset of them, and alongside strangers.
    alone = model_colours(shipped[:3])
    assert all(alone[m] == colours[m] for m in shipped[:3])
    assert model_colours([*shipped, "acme-api"])["gemma-2-9b-it"] == alone.get(
        "gemma-2-9b-it", colours["gemma-2-9b-it"]
    )
    # Order does not matter.
    assert model_colours(list(reversed(everyone))) == colours


def test_single_model_policies_take_their_models_colour() -> None:
    colours = model_colours(["gemma-2-9b-it", "qwen2.5-7b-instruct"])
    assert policy_colour("always gemma-2-9b-it", colours) == colours["gemma-2-9b-it"]
    assert (
        policy_colour("best single model in hindsight (qwen2.5-7b-instruct)", colours) == colours["qwen2.5-7b-instruct"]
    )
    assert policy_colour("bandit-router", colours) == "#000000"
    assert policy_colour("LinUCB (alpha 1)", colours) == policy_colour("LinUCB (alpha 0.5)", {})
