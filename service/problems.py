"""The problem document (RFC 9457): the one shape every error leaves in, whichever layer refuses
the request (service.api.errors for the views, service.auth.web for credentials)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """A problem document; ``type`` stays about:blank, so ``title`` is the HTTP phrase."""
    document = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    document["instance"] = request.path
    document.update(extra)
    return Response(orjson.dumps(document), status=status, mimetype=PROBLEM_TYPE)
