"""``GET /openapi.json``: the OpenAPI 3.1 description, shipped as a file in the package."""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)
DOCUMENT = files("service.api").joinpath("openapi.json").read_bytes()


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(DOCUMENT, mimetype="application/json")
