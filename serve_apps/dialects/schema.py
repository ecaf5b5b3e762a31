"""The base of every documented response body.

Routes return plain dicts and FastAPI validates them against these models (response_model) with
`exclude_unset`, so the answer keeps exactly the keys the dict had: `extra="allow"` keeps a key a
model does not name (filtering could otherwise drop a field an SDK reads), and a key the dict lacks
is not added with a default. A dict that breaks its model is a server bug and answers 500.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# How every route that answers one of these models is declared (see the module docstring).
RESPONSE = {"response_model_exclude_unset": True}
