"""The problem document (RFC 9457): the one shape every error leaves in, whichever layer refuses
the request (service.api.errors for the views and unknown routes, service.auth.web for
credentials)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, request

PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """A problem document about the current Flask request."""
    return problem_at(request.path, status, title, detail, **extra)


def problem_at(path: str, status: int, title: str, detail: str, **extra: Any) -> Response:
    """A problem document about ``path`` (its ``instance``), built with or without a Flask
    request; ``type`` stays about:blank, so ``title`` is the HTTP phrase."""
    document = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    document["instance"] = path
    document.update(extra)
    return Response(orjson.dumps(document), status=status, mimetype=PROBLEM_TYPE)
