"""The rules configuration values are checked against, and the error that names key, rule and value."""

from __future__ import annotations

import math
import re

from bandit_router.errors import InputError

ENV_PREFIX = "BANDIT_ROUTER_"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


class ConfigError(InputError):
    """The configuration breaks a rule; the message names the key, the rule and the value."""


def require(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} {rule}, got {value!r}")


def finite_nonneg(key: str, value: float) -> None:
    require(math.isfinite(value) and value >= 0, key, "must be a finite number >= 0", value)


def positive(key: str, value: float) -> None:
    require(math.isfinite(value) and value > 0, key, "must be a finite number > 0", value)
