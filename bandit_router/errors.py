"""Domain errors of the router; the gRPC edge maps each to one status code, the CLI prints input errors."""

from __future__ import annotations


class InputError(ValueError):
    """A file, flag or setting a command was given breaks a rule; the message names it, the rule and the value.

    The command line prints it as one line and exits 2.
    """


class RouterError(Exception):
    """Base of every error the service reports to a caller."""


class InvalidArgument(RouterError):
    """A request field breaks a rule; the message names the field, the rule and the value."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field} {rule}, got {shown}")
        self.field = field
        self.rule = rule


class NotFound(RouterError):
    """The named decision is unknown or has expired."""


class AlreadyExists(RouterError):
    """The named decision was already rewarded."""


class FailedPrecondition(RouterError):
    """The request is valid but cannot be served in the current state (e.g. no candidate left)."""


class ResourceExhausted(RouterError):
    """The caller holds as much as its quota allows (decisions waiting for a reward)."""


class Unavailable(RouterError):
    """A dependency (Redis) cannot be reached; the caller should retry."""
