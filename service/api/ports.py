"""Which routes answer on which port. With ``ORDERS_ADMIN_PORT`` set, ``/metrics``, ``/status``
and the probes answer only on the admin port and everything else only on the public port
(``ORDERS_PORT``); the other port answers 404, as a problem document like every other 404.

The port is the one the request arrived on: gunicorn sets ``SERVER_PORT`` from the listening
socket's own address, not from the Host header, so a client cannot pick it (tests/security).
The request pipeline (service.api.pipeline) asks this for every request that matched a route.
"""

from __future__ import annotations

ADMIN_ROUTES = frozenset(("/metrics", "/healthz", "/readyz", "/status"))


def on_its_port(route: str, server_port: str | None, admin_port: str | None) -> bool:
    """Whether ``route`` answers on the port the request arrived on (always, with no admin
    port)."""
    if admin_port is None:
        return True
    return (server_port == admin_port) == (route in ADMIN_ROUTES)
