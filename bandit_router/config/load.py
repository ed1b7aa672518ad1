"""Loading the configuration: the shipped catalog, one TOML file and environment overrides, validated."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from bandit_router.config.catalog import ModelSpec
from bandit_router.config.checks import ENV_PREFIX, ConfigError, require
from bandit_router.config.root import SECTIONS, Config


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Converts a TOML or environment value to the field's declared type, or says why not."""
    if isinstance(annotation, types.UnionType):
        # ``float | None``: an absent key is the None; a given one must be the other type.
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    target = annotation if isinstance(annotation, type) else typing.get_origin(annotation)
    if target is tuple:
        # Lists come from TOML arrays, or space-separated from the environment.
        item = typing.get_args(annotation)[0]
        items = value.split() if isinstance(value, str) else value
        require(isinstance(items, (list, tuple)), key, f"must be a list of {item.__name__}", value)
        try:
            return tuple(v if isinstance(v, item) and not isinstance(v, bool) else item(v) for v in items)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a list of {item.__name__}, got {value!r}") from None
    if isinstance(value, str) and target is not str:
        # Environment values arrive as text.
        if target is bool:
            require(value.lower() in ("1", "0", "true", "false"), key, "must be true or false", value)
            return value.lower() in ("1", "true")
        try:
            value = int(value) if target is int else float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a {target.__name__}, got {value!r}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    require(
        isinstance(value, target) and not (target is int and isinstance(value, bool)),
        key,
        f"must be a {target.__name__}",
        value,
    )
    return value


def _build(cls: type, key: str, raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(raw) - names)
    require(not unknown, key, f"has unknown keys (known: {', '.join(sorted(names))})", unknown)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(raw))
    require(not missing, key, "must have every required key", f"missing {', '.join(missing)}")
    return cls(**{k: _coerce(f"{key}.{k}", hints[k], v) for k, v in raw.items()})


def default_catalog_text() -> str:
    return resources.files("bandit_router.data").joinpath("catalog.toml").read_text(encoding="utf-8")


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def _catalog(entries: Any, base: str) -> tuple[ModelSpec, ...]:
    """The shipped catalog (``base`` shipped, or auto without a backend) with each entry added, or merged key by
    key into the shipped model of its id; the entries alone for ``empty``, and for ``auto`` once an entry has a
    backend (each still merged into the shipped model of its id)."""
    require(
        isinstance(entries, list) and all(isinstance(e, dict) for e in entries),
        "models",
        "must be an array of tables ([[models]])",
        type(entries).__name__,
    )
    shipped: dict[str, dict[str, Any]] = {}
    if base != "empty":
        shipped = {m["id"]: m for m in tomllib.loads(default_catalog_text())["models"]}
    own = base == "auto" and any(e.get("base_url") for e in entries)
    by_id = {} if own or base == "empty" else dict(shipped)
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        model_id = entry.get("id")
        require(isinstance(model_id, str), f"models[{i}].id", "must be given, as a string", model_id)
        require(model_id not in seen, "models.id", "must be unique", model_id)
        seen.add(model_id)
        by_id[model_id] = {**shipped.get(model_id, {}), **entry}
    return tuple(_build(ModelSpec, f"models[{model_id}]", raw) for model_id, raw in by_id.items())


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Reads the TOML file (or the shipped defaults), applies ``BANDIT_ROUTER_SECTION_KEY`` overrides, validates.

    ``REDIS_URL`` is honoured as the conventional override of ``redis.url``. ``[[models]]`` entries extend or
    override the shipped catalog, unless ``catalog.base`` is ``empty``, or ``auto`` (the default) with an entry
    that has a backend: then they are the catalog.
    """
    env = os.environ if env is None else env
    raw = _read_toml(path) if path is not None else {}
    unknown = sorted(set(raw) - set(SECTIONS) - {"models"})
    require(not unknown, "config", f"has unknown sections (known: {', '.join([*SECTIONS, 'models'])})", unknown)
    sections: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = raw.get(name, {})
        require(isinstance(section, dict), name, "must be a table", section)
        sections[name] = dict(section)
    if env.get("REDIS_URL"):
        sections["redis"]["url"] = env["REDIS_URL"]
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        require(section is not None, name, f"must name a section ({', '.join(SECTIONS)})", value)
        assert section is not None
        sections[section][rest[len(section) + 1 :]] = value
    built = {name: _build(cls, name, sections[name]) for name, cls in SECTIONS.items()}
    return Config(**built, models=_catalog(raw.get("models", []), built["catalog"].base))
