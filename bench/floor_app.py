"""The floor: the least a Flask view can do for ``GET /orders/<page>``.

It returns fixed bytes (a real page of the service, captured by the harness into the file named by
``BENCH_FLOOR_BODY``), so every system moves the same number of bytes and only the work differs.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response


def create_app() -> Flask:
    """One view, no extensions, no middleware: what Flask itself costs under gunicorn."""
    body = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
    app = Flask(__name__)

    @app.get("/orders/<int:page>")
    def orders_page(page: int) -> Response:
        return Response(body, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


app = create_app()
