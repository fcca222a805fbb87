"""The gunicorn internals the worker relies on, driven with real gunicorn objects: an upgrade
that renames or changes one fails here (pyproject holds gunicorn to the tested series)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import gunicorn
import pytest
from gunicorn.config import Config
from gunicorn.workers import gthread

from service.compat import gunicorn as compat


def test_the_installed_gunicorn_is_the_tested_series() -> None:
    assert gunicorn.__version__.startswith(compat.TESTED + ".")


def test_every_internal_is_there() -> None:
    compat.check()


def test_a_renamed_internal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(gthread.ThreadWorker, "murder_pending")
    with pytest.raises(compat.IncompatibleGunicorn, match="murder_pending"):
        compat.check()


def test_preloaded_bytes_are_parsed_without_reading_the_socket() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn = gthread.TConn(Config(), ours, ("127.0.0.1", 1), ("127.0.0.1", 2))
        compat.preload(conn, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")
        assert conn.data_ready
        request = next(conn.parser)  # a read from the socket would block: nothing was sent
        assert request.path == "/a"
        assert request.body.read() == b""
        assert compat.take_buffered(conn) == b"GET /b HTTP/1.1\r\n"


def test_tls_and_http2_are_refused() -> None:
    assert compat.refuses(Config()) is None
    tls = SimpleNamespace(is_ssl=True, http_protocols=["h1"])
    assert compat.refuses(tls) is not None
    h2 = SimpleNamespace(is_ssl=False, http_protocols=["h2", "h1"])
    assert compat.refuses(h2) is not None
