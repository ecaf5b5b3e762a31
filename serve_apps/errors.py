"""Errors, answered in the shape each dialect's SDK reads.

Every error is first a list of issues `{"loc": [...], "msg": ..., "type": ...}` (FastAPI's validation
shape, which names the field). It is then rendered by the shape of the route that raised it:

- `detail` (TSFM.ai, Nixtla, Cohere, and paths that match no route): `{"detail": [issue, ...]}`; the
  nixtla and cohere SDKs put the whole body into their exception, so the field's location shows.
- `openai` (/v1/files, /v1/fine_tuning, /v1/models): `{"error": {"message", "type", "param", "code"}}`,
  which the openai SDK turns into `e.message`, `e.type`, `e.param` (the field location) and `e.code`.

The shape belongs to the router (its `route_class`), never to the request's headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

Shape = Literal["detail", "openai"]
LOC_ROOTS = ("body", "path", "query", "header", "cookie")


class ApiError(Exception):
    """An error answered with `status` and one issue naming the field; `headers` (e.g. Retry-After) go out with it."""

    def __init__(self, status: int, loc: list, msg: str, type_: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status, self.loc, self.msg, self.type, self.headers = status, loc, msg, type_, headers

    def detail(self) -> list[dict]:
        return [{"loc": self.loc, "msg": self.msg, "type": self.type}]


def invalid(loc: list, msg: str, type_: str = "value_error") -> ApiError:
    return ApiError(422, loc, msg, type_)


def not_found(loc: list, what: str) -> ApiError:
    return ApiError(404, loc, f"{what} not found", "not_found")


def validation_detail(exc: ValidationError, prefix: list) -> list[dict]:
    """A body validated by hand (not by FastAPI) -> the detail list, `loc` starting at `prefix`."""
    return [{"loc": prefix + list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def invalid_body(exc: ValidationError) -> JSONResponse:
    """For routes that parse their body by hand; all of them answer in the detail shape."""
    return JSONResponse(status_code=422, content={"detail": validation_detail(exc, ["body"])})


# ---- the documented shapes ----------------------------------------------------------------------------
class Issue(BaseModel):
    loc: list[str | int] = Field(description="where: 'body'|'path'|'query'|'header', then the field path")
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class DetailError(BaseModel):
    """The TSFM.ai, Nixtla and Cohere error body."""

    detail: list[Issue]


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error | server_error")
    param: str | None = Field(description="the field, e.g. 'training_file' or 'hyperparameters.n_epochs'")
    code: str | None = Field(description="the issue's type, e.g. 'not_found', 'missing', 'greater_than_equal'")


class OpenAIError(BaseModel):
    """The OpenAI-style error body."""

    error: OpenAIErrorInfo


MODELS: dict[str, type[BaseModel]] = {"detail": DetailError, "openai": OpenAIError}
DESCRIPTIONS = {400: "Body is not valid JSON or not valid compressed data", 401: "Missing or invalid API key",
                404: "Not found (or owned by another organization)", 409: "Conflicts with the resource's state",
                413: "Request too large", 415: "Unsupported content-encoding",
                422: "Invalid request; the error names the field", 429: "Rate or concurrency limit reached; see Retry-After",
                503: "Overloaded; retry later"}


def error_responses(shape: Shape, *statuses: int) -> dict[int | str, dict]:
    """The `responses=` documentation of these error statuses in `shape`."""
    return {s: {"model": MODELS[shape], "description": DESCRIPTIONS[s]} for s in statuses}


class OpenAIRoute(APIRoute):
    """Routes of the OpenAI-style routers answer errors in OpenAI's shape."""

    error_shape: Shape = "openai"


# ---- rendering ------------------------------------------------------------------------------------------
def _param(loc: list) -> str | None:
    """['body', 'hyperparameters', 'n_epochs'] -> 'hyperparameters.n_epochs'; list positions as [i]."""
    parts = list(loc[1:] if loc and loc[0] in LOC_ROOTS else loc)
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or None


def openai_body(status: int, issues: list[dict]) -> dict:
    first = issues[0]
    param = _param(first["loc"])
    if len(issues) == 1:
        message = first["msg"]
    else:  # one error object, like OpenAI's; the message lists every issue
        message = "; ".join(f"{_param(i['loc']) or 'request'}: {i['msg']}" for i in issues)
    return {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": param, "code": first["type"] or None}}


def render(shape: Shape, status: int, issues: list[dict], headers: dict | None = None) -> JSONResponse:
    content = openai_body(status, issues) if shape == "openai" else {"detail": issues}
    return JSONResponse(status_code=status, content=content, headers=headers)


def _routes_matching(scope: dict) -> list:
    """The routes whose path matches (any method), from the routers install_error_handlers was given
    (included without a prefix, so each route's own path is the public one)."""
    app = scope.get("app")
    routes = getattr(getattr(app, "state", None), "error_routes", [])
    return [r for r in routes if r.matches(scope)[0] != Match.NONE]


def shape_of(scope: dict) -> Shape:
    """The shape of the route serving this request; a request outside routing (the body middleware,
    an unknown path) takes the shape of the first route its path matches, else `detail`."""
    route = scope.get("route")
    if route is None:
        matching = _routes_matching(scope)
        route = matching[0] if matching else None
    return getattr(route, "error_shape", "detail")


def _clean(errors: list[dict]) -> list[dict]:
    """Keeps loc/msg/type (and ctx when it is JSON-safe); drops the echoed input, which can be huge."""
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        ctx = e.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in ctx.items()}
        out.append(item)
    return out


def _http_issue(exc: StarletteHTTPException) -> list[dict]:
    msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return [{"loc": [], "msg": msg, "type": msg.lower().replace(" ", "_")}]


def _allow(request: Request) -> str:
    """Every method of every route on this path: Starlette's own 405 names only the first route's."""
    methods = set()
    for route in _routes_matching(request.scope):
        methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    app.state.error_routes = [r for router in routers for r in router.routes]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return render(shape_of(request.scope), 422, _clean(exc.errors()))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return render(shape_of(request.scope), exc.status, exc.detail(), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allow(request)
        return render(shape_of(request.scope), exc.status_code, _http_issue(exc), headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return render(shape_of(request.scope), 500, [{"loc": [], "msg": "internal error", "type": "internal"}])
