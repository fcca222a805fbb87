"""Every error leaves as ``application/problem+json`` (RFC 9457) with an actionable ``detail``."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from service.cache.aside import PageNotFound
from service.orders.database import DatabaseUnavailable
from service.orders.pagination import InvalidPage
from service.problems import problem, problem_at

RETRY_AFTER_SECONDS = 1

bp = Blueprint("errors", __name__)


@bp.app_errorhandler(InvalidPage)
def invalid_page(error: InvalidPage) -> Response:
    return problem(400, "Bad Request", error.detail)


@bp.app_errorhandler(PageNotFound)
def page_not_found(error: PageNotFound) -> Response:
    return problem(
        404,
        "Not Found",
        f"Page {error.page} is past the last page, {error.total_pages}.",
        total_pages=error.total_pages,
    )


def not_found(path: str) -> Response:
    """The 404 of a path no route answers (here, or on this port: service.api.pipeline)."""
    return problem_at(
        path, 404, "Not Found", f"There is no resource at {path}. Pages live at /orders/<page>."
    )


@bp.app_errorhandler(DatabaseUnavailable)
def database_unavailable(error: DatabaseUnavailable) -> Response:
    response = problem(
        503,
        "Service Unavailable",
        "The orders database is not answering and this page is not cached; retry shortly.",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    """404, 405 (with its Allow header) and the rest of werkzeug's errors, as problems."""
    status = error.code or 500
    if status == 404:
        return not_found(request.path)  # NotFound's only header is its HTML Content-Type
    details = {405: f"{request.method} is not allowed here."}
    response = problem(status, error.name, details.get(status, error.description or error.name))
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.app_errorhandler(Exception)
def unexpected_error(error: Exception) -> Response:
    """A bug: logged with its traceback, answered without internals."""
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return problem(500, "Internal Server Error", "An unexpected error occurred; it was logged.")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
