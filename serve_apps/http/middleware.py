"""Request-body middleware: size limit (413) and decoding of compressed bodies.

The nixtla SDK zstd-compresses bodies over 1 MB (`content-encoding: zstd`); gzip and deflate
are accepted too. The decoded size is limited as well, so a small bomb cannot exhaust memory.
"""

from __future__ import annotations

import io
import zlib

import zstandard

from serve_apps.errors import render, shape_of


def _error(scope, status: int, msg: str, type_: str) -> tuple[int, bytes]:
    """Answered before routing, in the error shape of the route the path belongs to."""
    return status, render(shape_of(scope), status, [{"loc": ["body"], "msg": msg, "type": type_}]).body


def _decode(data: bytes, encoding: str, limit: int) -> bytes:
    if encoding == "zstd":
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            return reader.read(limit + 1)
    if encoding in ("gzip", "deflate"):
        d = zlib.decompressobj(zlib.MAX_WBITS | 32)
        return d.decompress(data, limit + 1)
    raise ValueError(encoding)


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or what was read once it passed `limit` bytes (longer than the
    limit: the caller answers 413); None when the client left first."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit or not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive):
    """An ASGI `receive` that hands the app the already-read `body` once, then defers to the real
    one (so a disconnect still reaches the app)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        encoding = headers.get("content-encoding", "identity").lower().strip()
        body = await read_body(receive, self.max_bytes)
        if body is None:
            return
        if len(body) > self.max_bytes:
            return await self._reply(send, *_error(scope, 413, f"request body exceeds {self.max_bytes} bytes", "too_large"))
        if encoding not in ("identity", ""):
            try:
                body = _decode(body, encoding, self.max_bytes)
            except ValueError:
                return await self._reply(send, *_error(scope, 415, f"unsupported content-encoding {encoding!r}", "unsupported_encoding"))
            except (zstandard.ZstdError, zlib.error):
                return await self._reply(send, *_error(scope, 400, f"body is not valid {encoding} data", "bad_encoding"))
            if len(body) > self.max_bytes:
                return await self._reply(send, *_error(scope, 413, f"decoded body exceeds {self.max_bytes} bytes", "too_large"))
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"]
                                         if k.lower() not in (b"content-encoding", b"content-length")]
                         + [(b"content-length", str(len(body)).encode())])
        return await self.app(scope, replaying(body, receive), send)

    @staticmethod
    async def _reply(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
