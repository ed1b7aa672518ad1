"""Errors in OpenAI's shape (``{"error": {message, type, param, code}}``) with the HTTP status of each domain error."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from bandit_router import errors

# Each domain error's HTTP status and OpenAI error type (the gRPC edge maps the same errors to status codes).
_BY_ERROR: dict[type[errors.RouterError], tuple[int, str, str]] = {
    errors.InvalidArgument: (400, "invalid_request_error", "invalid_argument"),
    errors.NotFound: (404, "not_found_error", "not_found"),
    errors.AlreadyExists: (409, "conflict_error", "already_exists"),
    errors.ResourceExhausted: (429, "rate_limit_error", "resource_exhausted"),
    errors.FailedPrecondition: (400, "invalid_request_error", "failed_precondition"),
    errors.Unavailable: (503, "service_unavailable_error", "unavailable"),
}


# Not frozen: Python sets an exception's __traceback__ as it passes through a with block (contextlib, spans).
@dataclasses.dataclass
class ApiError(Exception):
    """An error answered to an HTTP caller."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status, headers=headers)


def invalid(field: str, rule: str, value: object) -> ApiError:
    """A body field that breaks a rule, worded as the domain's InvalidArgument is."""
    return from_router_error(errors.InvalidArgument(field, rule, value))


def from_router_error(exc: errors.RouterError) -> ApiError:
    status, kind, code = _BY_ERROR[type(exc)]
    param = exc.field if isinstance(exc, errors.InvalidArgument) else None
    return ApiError(status, str(exc), kind, param, code)
