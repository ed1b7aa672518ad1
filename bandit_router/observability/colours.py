"""One colour per model and per policy, the same in every chart, report, plot and the dashboard."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import resources

# Sixteen colours any two of which are told apart at a glance (CIE76 distance above 25; Trubetskoy's
# "20 distinct colours" without the pale ones that vanish on white).
PALETTE = (
    "#4363d8",
    "#f58231",
    "#3cb44b",
    "#e6194b",
    "#911eb4",
    "#9a6324",
    "#f032e6",
    "#808080",
    "#bfef45",
    "#42d4f4",
    "#000075",
    "#800000",
    "#469990",
    "#808000",
    "#ffe119",
    "#dcbeff",
)
# Learning policies and references: distinct from each other, drawn with their own line styles.
POLICY_COLOURS = {
    "bandit-router": "#000000",
    "LinUCB": "#0b7285",
    "epsilon-greedy": "#c2255c",
    "full information": "#5f3dc4",
    "random": "#adb5bd",
    "oracle": "#495057",
}


@cache
def _registry() -> dict[str, int]:
    """The shipped catalog's models, then the reference profiles', in file order: each one's preferred slot."""
    ids: list[str] = []
    for name in ("catalog.toml", "known_models.toml"):
        text = resources.files("bandit_router.data").joinpath(name).read_text(encoding="utf-8")
        ids += [m["id"] for m in tomllib.loads(text)["models"] if m["id"] not in ids]
    return {model: i % len(PALETTE) for i, model in enumerate(ids)}


def _preferred(model: str) -> int:
    slot = _registry().get(model)
    if slot is None:
        slot = int.from_bytes(hashlib.sha256(model.encode()).digest()[:4], "big") % len(PALETTE)
    return slot


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """A colour for each model, distinct for up to 16 models (then the palette repeats). A model keeps its
    preferred colour (fixed by its id) unless another model of the set holds it, so a model looks the same
    in every report of traffic it appears in."""
    unique = list(dict.fromkeys(models))
    order = sorted(unique, key=lambda m: (m not in _registry(), _registry().get(m, 0), m))
    taken: dict[int, str] = {}
    slots: dict[str, int] = {}
    for model in order:
        slot = _preferred(model)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken[slot] = model
        slots[model] = slot
    return {m: PALETTE[slots[m]] for m in unique}


def policy_colour(name: str, models: dict[str, str]) -> str:
    """A policy's colour: a single-model policy ("always M", "best single model in hindsight (M)") has M's."""
    for model, colour in models.items():
        if name == f"always {model}" or name.endswith(f"({model})"):
            return colour
    for prefix, colour in POLICY_COLOURS.items():
        if name.startswith(prefix):
            return colour
    return PALETTE[_preferred(name)]
