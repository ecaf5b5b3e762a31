"""What every route depends on: the replica's services and the authenticated caller.

Authentication is a dependency, so FastAPI resolves it before it validates the body: a caller
without a valid key gets a 401, never the body's schema in a 422.
"""

from __future__ import annotations

from fastapi import Depends, Request

from serve_apps.auth import Caller, authenticate
from serve_apps.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


def caller(request: Request, svc: Services = Depends(services)) -> Caller:
    return authenticate(request, svc.keys)
