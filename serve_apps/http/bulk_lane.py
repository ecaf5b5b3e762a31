"""The bulk lane over HTTP: a request with a big body is answered in full by a ModelServer replica.

Decoding, validating and answering a 10^4-series body holds the GIL for a second or more (orjson
and pydantic-core are C code that never releases it, so a worker thread does not help): inside the
ingress that stalls the event loop every small request of the replica waits on. So the ingress
passes such a request on as raw bytes (`BulkForwarder`, the outermost middleware) and the
ModelServer runs the same app over its own services and engine (`answer`), handing back the raw
response. Small requests never wait behind a big body's parsing; the big one pays one hop of bytes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from serve_apps.errors import render, shape_of
from serve_apps.http.middleware import read_body, replaying

Headers = list[tuple[bytes, bytes]]
# A ModelServer that sheds says so with a 503; its clients retry after this many seconds.
RETRY_AFTER_S = 5


@dataclass
class RawRequest:
    """What the ModelServer needs of an HTTP request to run it through the app."""

    method: str
    path: str
    query_string: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None


@dataclass
class RawResponse:
    status: int
    headers: Headers
    body: bytes


def content_length(scope) -> int | None:
    for key, value in scope["headers"]:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BulkForwarder:
    """ASGI middleware of the ingress: bodies over `min_bytes` (and within the body limit, which
    the app itself answers with 413) go to the ModelServer's `http` method."""

    def __init__(self, app, lane: DeploymentHandle, min_bytes: int, max_bytes: int):
        self.app, self.lane, self.min_bytes, self.max_bytes = app, lane, min_bytes, max_bytes

    async def __call__(self, scope, receive, send):
        length = content_length(scope) if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") else None
        if length is None or not self.min_bytes < length <= self.max_bytes:
            return await self.app(scope, receive, send)
        body = await read_body(receive, self.max_bytes)
        if body is None:
            return
        if len(body) > self.max_bytes:  # more than it announced: the app's body check answers
            return await self.app(scope, replaying(body, receive), send)
        request = RawRequest(scope["method"], scope["path"], scope.get("query_string", b""), list(scope["headers"]),
                             body, tuple(scope["client"]) if scope.get("client") else None)
        try:
            answer_ = await self.lane.http.remote(request)
        except BackPressureError:
            # Its queue is full: answered now, in the dialect's error shape, rather than queued.
            response = render(shape_of(scope), 503, [{"loc": [], "msg": "the bulk lane is at capacity; retry later",
                                                      "type": "overloaded"}],
                              headers={"Retry-After": str(RETRY_AFTER_S)})
            return await response(scope, receive, send)
        await send({"type": "http.response.start", "status": answer_.status, "headers": answer_.headers})
        await send({"type": "http.response.body", "body": answer_.body})


async def answer(app, request: RawRequest) -> RawResponse:
    """Runs `request` through the ASGI `app` in this process and collects its (whole) response."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
             "scheme": "http", "path": request.path, "raw_path": request.path.encode(), "root_path": "",
             "query_string": request.query_string, "headers": request.headers, "client": request.client,
             "server": None}
    done = asyncio.Event()
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await done.wait()  # the client is the ingress, which stays until the answer is complete
        return {"type": "http.disconnect"}

    status, headers, chunks = 500, [], []

    async def send(message):
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await app(scope, receive, send)
    done.set()
    return RawResponse(status, headers, b"".join(chunks))
