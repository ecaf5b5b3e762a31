"""ASGI guards that run before FastAPI looks at a body:

- `CallerGate` (outermost): authentication and the per-organization request rate. FastAPI parses
  the JSON body before it resolves any dependency, so a caller without a valid key would otherwise
  get a 422 describing the body (a JSON error, or the schema) before the `caller` dependency's 401.
  Only the paths in PUBLIC_PATHS (health, the API description) are open.
- `JsonGuard` (inside the size/decompression middleware): a JSON body must be UTF-8 and nested at
  most MAX_JSON_DEPTH deep. Python's json recurses per level (2,000 levels: RecursionError) and
  so does everything after it; both are a 400 naming the body (and, for depth, the field).
"""

from __future__ import annotations

import json
import re

from serve_apps.auth import authenticate_header
from serve_apps.errors import ApiError, render, shape_of
from serve_apps.http.middleware import replaying
from serve_apps.limits import RateLimited, RateLimiter

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
MAX_JSON_DEPTH = 64


def error_response(exc: ApiError, scope: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An ApiError as the status, headers and body the exception handlers would answer, in the
    error shape of the route the path belongs to (the gate answers before routing)."""
    body = render(shape_of(scope), exc.status, exc.detail()).body
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, RateLimited):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return exc.status, headers, body


async def _reply(send, exc: ApiError, scope: dict) -> None:
    status, headers, body = error_response(exc, scope)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CallerGate:
    def __init__(self, app, keys: dict[str, str], limiter: RateLimiter):
        self.app, self.keys, self.limiter = app, keys, limiter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"), "")
        try:
            caller = authenticate_header(header, self.keys)
            self.limiter.acquire(caller.organization)
        except ApiError as exc:
            return await _reply(send, exc, scope)
        return await self.app(scope, receive, send)


_JSON_TOKENS = re.compile(rb'[\[\]{}"\\]')
_JSON_PATH_TOKENS = re.compile(rb'[\[\]{}"\\,:]')


def json_depth_error(body: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
    """The byte offset where `body` first nests deeper than `limit`, or None. Strings are skipped.

    One regex pass over brackets and quotes only, so a body of millions of numbers costs little.
    """
    depth, in_string, skip = 0, False, -1
    for m in _JSON_TOKENS.finditer(body):
        pos, ch = m.start(), body[m.start()]
        if pos == skip:
            continue
        if in_string:
            if ch == 0x5C:  # backslash: the next byte is escaped
                skip = pos + 1
            elif ch == 0x22:
                in_string = False
            continue
        if ch == 0x22:
            in_string = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return pos
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return None


def json_path_at(body: bytes, offset: int) -> list:
    """The field path (keys and list indexes, as in a 422's `loc`) that contains byte `offset`.

    Only run once a body is known to be refused, so its cost (every comma) is paid rarely.
    """
    path: list = []  # one entry per open container: its current key / index
    kinds: list[int] = []
    in_string, skip, string_start, last_string = False, -1, 0, None
    for m in _JSON_PATH_TOKENS.finditer(body, 0, offset):
        pos, ch = m.start(), body[m.start()]
        if pos == skip:
            continue
        if in_string:
            if ch == 0x5C:
                skip = pos + 1
            elif ch == 0x22:
                in_string = False
                last_string = body[string_start + 1 : pos]
            continue
        if ch == 0x22:
            in_string, string_start = True, pos
        elif ch in (0x5B, 0x7B):
            kinds.append(ch)
            path.append(0 if ch == 0x5B else None)
        elif ch in (0x5D, 0x7D) and kinds:
            kinds.pop()
            path.pop()
        elif ch == 0x3A and kinds and kinds[-1] == 0x7B and last_string is not None:
            path[-1] = _key(last_string)
        elif ch == 0x2C and kinds and kinds[-1] == 0x5B:
            path[-1] += 1
    return [p for p in path if p is not None]


def _key(raw: bytes) -> str:
    """A JSON object key as its text spells it (escapes undone)."""
    try:
        return json.loads(b'"' + raw + b'"')
    except ValueError:
        return raw.decode("utf-8", "replace")


class JsonGuard:
    """Refuses JSON bodies that are not UTF-8 or that nest too deep (400 naming the body/field)."""

    def __init__(self, app, max_depth: int = MAX_JSON_DEPTH):
        self.app, self.max_depth = app, max_depth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        content_type = next((v.decode("latin-1").lower() for k, v in scope["headers"] if k.lower() == b"content-type"), "")
        if content_type and "json" not in content_type:
            return await self.app(scope, receive, send)  # multipart uploads, forms: not JSON
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        error = self._check(body)
        if error is not None:
            return await _reply(send, error, scope)
        return await self.app(scope, replaying(body, receive), send)

    def _check(self, body: bytes) -> ApiError | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ApiError(400, ["body"], f"the JSON body is not valid UTF-8 (byte {exc.start}); send it "
                                           "encoded as UTF-8", "invalid_encoding")
        offset = json_depth_error(body, self.max_depth)
        if offset is not None:
            loc = ["body", *json_path_at(body, offset)][:8]  # enough to name the field
            return ApiError(400, loc, f"the JSON body nests deeper than {self.max_depth} levels "
                                          f"(at byte {offset})", "too_deep")
        return None
