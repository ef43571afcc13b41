"""Reading the portal's small forms and query parameters, with hard limits on every field."""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from gateway.errors import Rejected

__all__ = [
    "MAX_BODY_BYTES",
    "BadForm",
    "method",
    "read_form",
    "text",
]

MAX_BODY_BYTES = 16 * 1024
_MAX_FIELDS = 16
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_METHOD = re.compile(r"[A-Z]{3,16}")


class BadForm(Rejected):
    """The request body is not one of our forms (wrong type, too big, too many fields)."""


async def read_form(request: Request) -> FormData:
    """The URL-encoded (or multipart, without files) body of a POST."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in _FORM_TYPES:
        raise BadForm("not a form")
    try:
        form = await request.form(max_files=0, max_fields=_MAX_FIELDS, max_part_size=MAX_BODY_BYTES)
    except HTTPException as error:
        if error.status_code == 413:  # the body limit answers this one itself
            raise
        raise BadForm("unreadable form") from None
    except MultiPartException:
        raise BadForm("unreadable form") from None
    if any(not isinstance(value, str) for _, value in form.multi_items()):
        raise BadForm("unexpected file")
    return form


def text(fields: Mapping[str, object], name: str, *, limit: int, strip: bool = True) -> str:
    """A text field, or "" when missing, not text or longer than ``limit`` characters."""
    value = fields.get(name)
    if not isinstance(value, str) or len(value) > limit:
        return ""
    return value.strip() if strip else value


def method(value: str | None) -> str:
    """The ``rm`` parameter as an upper-case HTTP method; GET when absent or malformed."""
    candidate = (value or "").strip().upper()
    return candidate if _METHOD.fullmatch(candidate) else "GET"
