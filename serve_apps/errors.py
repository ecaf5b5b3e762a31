"""Errors in FastAPI's validation shape: {"detail": [{"loc": [...], "msg": ..., "type": ...}]}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered with `status` and a one-item validation-style detail naming the field."""

    def __init__(self, status: int, loc: list, msg: str, type_: str):
        super().__init__(msg)
        self.status, self.loc, self.msg, self.type = status, loc, msg, type_

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
    return JSONResponse(status_code=422, content={"detail": validation_detail(exc, ["body"])})


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _clean(exc.errors())})

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail()})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(status_code=500, content={"detail": [{"loc": [], "msg": "internal error", "type": "internal"}]})
