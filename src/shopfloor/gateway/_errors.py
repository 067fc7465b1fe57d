"""How Shopfloor's errors become HTTP answers: a status per error class (the most specific class in
the error's MRO wins), a JSON body ``{"detail": ..., "type": ...}``, never a traceback.

An error nobody mapped is a bug of the server: it is logged with its traceback and answered with a
bare 500 whose body says nothing about the code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from shopfloor.errors import (
    AgentNotFoundError,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ForkStepError,
    KeyNotFoundError,
    PermissionDeniedError,
    ProposalEditError,
    RunNotFoundError,
    RunStateError,
    ShopfloorError,
    SpecError,
    WorkspaceConflictError,
    WorkspaceNotFoundError,
    WorkspacePathError,
)

__all__ = ["ERRORS", "ErrorBody", "Problem", "ValidationErrorBody", "install_error_handlers", "status_for"]

log = logging.getLogger("shopfloor.gateway")

#: the status of each error class; a subclass not listed takes its nearest listed base's
STATUS: dict[type[ShopfloorError], int] = {
    ShopfloorError: 400,
    ConfigError: 422,
    SpecError: 422,
    WorkspacePathError: 422,
    ForkStepError: 422,
    ProposalEditError: 422,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    BudgetExceededError: 429,
    RunNotFoundError: 404,
    WorkspaceNotFoundError: 404,
    KeyNotFoundError: 404,
    AgentNotFoundError: 404,
    RunStateError: 409,
    WorkspaceConflictError: 409,
}


class Problem(BaseModel):
    """One problem of a spec, where it is."""

    model_config = ConfigDict(extra="forbid")
    file: str
    line: int | None = None
    column: int | None = None
    message: str


class ErrorBody(BaseModel):
    """Every 4xx answer of the control plane (422s of request validation name the field in ``detail``)."""

    model_config = ConfigDict(extra="forbid")
    detail: str
    type: str
    problems: list[Problem] | None = None


class ValidationErrorBody(BaseModel):
    """A request that does not match its schema: each problem's ``loc`` names the field."""

    detail: list[dict[str, Any]]


#: the error answers every authenticated route may give, for its OpenAPI document
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no valid credentials"},
    403: {"model": ErrorBody, "description": "a permission is missing"},
    404: {"model": ErrorBody, "description": "not found"},
    409: {"model": ErrorBody, "description": "the state does not allow it"},
    413: {"model": ErrorBody, "description": "the body is over the size limit"},
    422: {"model": ErrorBody | ValidationErrorBody, "description": "invalid request or spec"},
    429: {"model": ErrorBody, "description": "a budget or rate limit refuses it"},
}


def status_for(exc: ShopfloorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(exc: ShopfloorError) -> JSONResponse:
    status = status_for(exc)
    if isinstance(exc, ProposalEditError):
        # as FastAPI names a field of a body that does not validate: each problem's ``loc`` from ``body``
        problems = [{**problem, "loc": ["body", *problem["loc"]]} for problem in exc.problems]
        return JSONResponse({"detail": problems}, status_code=status)
    body: dict[str, Any] = {"detail": str(exc), "type": type(exc).__name__}
    headers: dict[str, str] = {}
    if isinstance(exc, SpecError):
        body["problems"] = [
            {"file": loc.file, "line": loc.line, "column": loc.column, "message": message}
            for loc, message in exc.problems
        ]
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="shopfloor"'
    if isinstance(exc, BudgetExceededError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after or 60)))
    return JSONResponse(body, status_code=status, headers=headers)


async def _shopfloor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShopfloorError)
    return error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error", "type": "InternalError"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ShopfloorError, _shopfloor_error)
    app.add_exception_handler(Exception, _unexpected)
