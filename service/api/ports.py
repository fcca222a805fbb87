"""Which routes answer on which port. With ``ORDERS_ADMIN_PORT`` set, ``/metrics``, ``/status``
and the probes answer only on the admin port and everything else only on the public port
(``ORDERS_PORT``); the other port answers 404, as a problem document like every other 404.

The port is the one the request arrived on: gunicorn sets ``SERVER_PORT`` from the listening
socket's own address, not from the Host header, so a client cannot pick it (tests/security).
"""

from __future__ import annotations

from flask import Flask, abort, request

ADMIN_ROUTES = frozenset(("/metrics", "/healthz", "/readyz", "/status"))


def init_app(app: Flask, admin_port: int) -> None:
    """Split the routes between the two ports; does nothing when there is no admin port."""
    if not admin_port:
        return
    admin = str(admin_port)

    def only_on_its_port() -> None:
        rule = request.url_rule
        if rule is None:
            return  # 404 anyway
        if (request.environ.get("SERVER_PORT") == admin) != (rule.rule in ADMIN_ROUTES):
            abort(404)

    app.before_request(only_on_its_port)
