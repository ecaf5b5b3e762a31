"""Bearer API keys mapped to organizations.

With no keys configured (the embedded single-user default) every request, with or without a key,
acts as organization "default"; with TSFM_API_KEYS set, a missing or unknown key is a 401.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from serve_apps.errors import ApiError


@dataclass(frozen=True)
class Caller:
    organization: str
    key_hint: str


def authenticate(request: Request, keys: dict[str, str]) -> Caller:
    return authenticate_header(request.headers.get("authorization", ""), keys)


def authenticate_header(header: str, keys: dict[str, str]) -> Caller:
    """The caller an `Authorization` header names; raises a 401 ApiError when keys are set and it is
    missing or unknown. Used by the `caller` dependency and by the gate that runs before any body
    is parsed (serve_apps.http.guards), so both decide alike."""
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not keys:
        return Caller(organization="default", key_hint=token[-4:] if token else "anonymous")
    if token not in keys:
        raise ApiError(401, ["header", "authorization"], "missing or invalid API key", "unauthorized")
    return Caller(organization=keys[token], key_hint=token[-4:])
