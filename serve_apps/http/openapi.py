"""Request bodies that a route parses by hand, documented in the OpenAPI document all the same.

Some routes take the raw JSON (`/v1/forecast` is a single request or a batch whose items fail one by
one; `/v2/anomaly_detection` picks its detector from the body; the async routes pop `job_options`).
`parsed_body(T)` documents such a body as the pydantic type `T` (openapi_extra), and
`install_openapi` adds the models it refers to to the document's components, and declares the
bearer API key on every operation that can answer 401 (all but /health).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

REF = "#/components/schemas/{model}"
_DEFS: dict[str, dict] = {}  # component name -> schema, of every type parsed_body documented
_BODIES: list[dict] = []  # the documented body schemas; operations name theirs by index (MARK)
MARK = "x-parsed-body"


def parsed_body(type_: Any, description: str = "") -> dict:
    """openapi_extra for a route whose JSON body is validated as `type_` inside the route."""
    schema = TypeAdapter(type_).json_schema(ref_template=REF, mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        if _DEFS.setdefault(name, definition) != definition:
            raise ValueError(f"two documented models are both named {name!r}")
    if description:
        schema["description"] = description
    _BODIES.append(schema)
    # FastAPI deep-merges openapi_extra into the schema it made of the route's raw `dict` parameter;
    # the mark lets install_openapi put this schema in its place instead.
    return {MARK: len(_BODIES) - 1}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in _DEFS.items():  # a model a route already documents keeps FastAPI's spelling
                components.setdefault(name, definition)
            doc["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer",
                                                              "description": "An API key from TSFM_API_KEYS"}}
            for item in doc["paths"].values():
                for operation in item.values():
                    if MARK in operation:
                        body = {"required": True, "content": {"application/json": {"schema": _BODIES[operation.pop(MARK)]}}}
                        operation["requestBody"] = body
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{"apiKey": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
