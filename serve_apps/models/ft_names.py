"""OpenAI-style names of finetuned models: `ft:<base>:<org>:<suffix>:<id>`.

OpenAI users read and paste `fine_tuned_model` as `ft:gpt-4o-mini:my-org:custom-suffix:AbC123`;
here `<base>` is the public id of the model it was finetuned from, `<org>` the owner's organization
(characters outside `[A-Za-z0-9._-]` become `-`), `<suffix>` the job's optional suffix (empty when
none: `ft:tsfm-base:acme::ft-...`) and `<id>` the registry id every other route knows it by. The name
is only a spelling of that id: the registry resolves it by its last part, within the caller's
organization, and accepts it only if it is exactly the model's own name (so `ft:x:y::<id>` is not an
alias of another's model, nor of one's own).
"""

from __future__ import annotations

import re

PREFIX = "ft"
SEPARATOR = ":"
# OpenAI allows up to 64 characters; these ones keep the name parseable and safe in a URL path.
MAX_SUFFIX = 64
SUFFIX_PATTERN = rf"^[A-Za-z0-9._-]{{0,{MAX_SUFFIX}}}$"  # empty: no suffix
_ORG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def fine_tuned_model_name(base: str, organization: str, suffix: str | None, model_id: str) -> str:
    """The name OpenAI-style clients see for the model `model_id` (public id) finetuned from `base`."""
    org = _ORG_UNSAFE.sub("-", organization)
    return SEPARATOR.join([PREFIX, base, org, suffix or "", model_id])


def model_id_of(name: str) -> str | None:
    """The registry id an `ft:...` name ends with; None when `name` is not such a name."""
    parts = name.split(SEPARATOR)
    if len(parts) < 5 or parts[0] != PREFIX or not parts[-1]:
        return None
    return parts[-1]
