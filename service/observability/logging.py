"""structlog set-up: one JSON object per line when stdout is not a terminal, readable when it is.

``configure(settings)`` runs once per process at start-up. The request hooks clear and bind
contextvars per request, so every line a view logs carries the request id. Loggers are cached on
first use and filtered by level before any processing (structlog's performance advice); JSON goes
through orjson straight to the stdout buffer. Secrets cannot slip through: URL settings are
rendered with ``.redacted()``, keys that name a secret are masked, tracebacks carry no frame locals
(structlog's ``dict_tracebacks`` and rich's console tracebacks both include them by default, and a
driver's ``connect(password=...)`` frame is one of them), and the passwords the settings hold are
scrubbed from every rendered line as a last net.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import quote

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from service.compat import structlog as compat
from service.config import DatabaseURL, RedisURL, is_secret_name

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Exceptions as dicts, without the frames' local variables (which hold connect() arguments).
_exception_dicts = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False)
)


class LogSettings(Protocol):
    """The two settings logging needs (``service.config.Settings`` has them)."""

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...


class SecretScrubber:
    """Replaces known secret values in a rendered line (raw, JSON-escaped and URL-quoted forms).

    The last net under the key and URL redaction: whatever path a password takes into a line (an
    exception message, a library's own log), it leaves as ``***``. Costs one substring search per
    form and secret on each line; lines without a secret are returned as they came. Values shorter
    than ``MIN_LENGTH`` are left alone: replacing every "ab" would garble the logs.
    """

    MIN_LENGTH = 4

    def __init__(self, secrets: Any = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < self.MIN_LENGTH:
                continue
            forms.update((secret, orjson.dumps(secret).decode()[1:-1], quote(secret, safe="")))
        ordered = sorted(forms, key=len, reverse=True)
        self._text = tuple(ordered)
        self._bytes = tuple(form.encode() for form in ordered)

    def __call__(self, _logger: WrappedLogger, _name: str, rendered: Any) -> Any:
        if isinstance(rendered, bytes):
            for raw in self._bytes:
                if raw in rendered:
                    rendered = rendered.replace(raw, b"***")
        elif isinstance(rendered, str):
            for text in self._text:
                if text in rendered:
                    rendered = rendered.replace(text, "***")
        return rendered


def redact_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Render URL settings without passwords and mask values under secret-looking keys."""
    for key, value in event_dict.items():
        if isinstance(value, DatabaseURL | RedisURL):
            event_dict[key] = value.redacted()
        elif value and is_secret_name(key):
            event_dict[key] = "***"
    return event_dict


MAX_FOREIGN_FIELD = 2048


def truncate_long_fields(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Cut string fields of library records (gunicorn logs a client's request path at debug) to
    ``MAX_FOREIGN_FIELD`` characters and name the cut fields, so no line grows with a request.
    The service's own lines are bounded where they are made (the request line cuts the path)."""
    cut = []
    for key, value in event_dict.items():
        if isinstance(value, str) and len(value) > MAX_FOREIGN_FIELD:
            event_dict[key] = value[:MAX_FOREIGN_FIELD]
            cut.append(f"{key}:{len(value)}")
    if cut:
        event_dict["truncated"] = cut
    return event_dict


def _orjson_dumps(event_dict: MutableMapping[str, Any], **kwargs: Any) -> bytes:
    return orjson.dumps(event_dict, default=kwargs.get("default"))


def _json_line_for_stdlib(event_dict: MutableMapping[str, Any], **kwargs: Any) -> str:
    return orjson.dumps(event_dict, default=kwargs.get("default")).decode()


def use_json(log_format: str, stream: Any = None) -> bool:
    """auto: JSON unless the stream is a terminal."""
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    out = sys.stdout if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return not (callable(isatty) and isatty())


class LineBuffer:
    """Rendered JSON lines on their way to stdout, written in one call every ``FLUSH_SECONDS``.

    Writing and flushing one line per request costs more than the rest of the log call: with four
    threads logging to a pipe, 18-25 us of CPU per line against 6-8 us batched
    (``python -m bench.log_lines``, this 2-core machine, 2026-11-26). Requests append to a
    deque (thread-safe without a lock); a daemon thread per process writes what accumulated.
    The buffer is flushed at exit; a SIGKILL loses at most ``FLUSH_SECONDS`` of lines. gunicorn
    workers use it (``configure(..., buffered=True)`` after fork); other processes write per line.
    """

    FLUSH_SECONDS = 0.05

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lines: deque[bytes] = deque()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="log-flusher", daemon=True).start()
        atexit.register(self.flush)

    def append(self, line: bytes) -> None:
        self._lines.append(line)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        lines = self._lines
        chunk = []
        while lines:
            try:
                chunk.append(lines.popleft())
            except IndexError:
                break
        if chunk:
            self._stream.write(b"".join(chunk))
            self._stream.flush()


class BufferedLineLogger:
    """A structlog logger for rendered bytes: each call queues one line in a ``LineBuffer``."""

    def __init__(self, buffer: LineBuffer) -> None:
        self._buffer = buffer

    def msg(self, message: bytes) -> None:
        self._buffer.append(message + b"\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


REQUEST_LOGGER = "service.request"


class RequestLineWriter:
    """The canonical request line as JSON, without structlog's processor chain.

    One line per request is most of what this service logs, and the chain (context merge, level,
    timestamp, redaction, renderer, scrubber) costs ~14 us per line on this machine against ~2.5 us
    here. The line is the one structlog would render for ``request_logger().info("request",
    **fields)`` with the request id bound (same keys, order and timestamp format; a test compares
    them), and it passes the same secret scrubber. Its fields are fixed by the request hooks:
    numbers, route templates and a client path cut to a bound, none of them a setting's value.
    """

    def __init__(self, level: int, emit: Callable[[bytes], None], scrub: SecretScrubber) -> None:
        self._info = level <= logging.INFO
        self._debug = level <= logging.DEBUG
        self._emit = emit
        self._scrub = scrub

    def write(self, fields: dict[str, Any], request_id: str | None, *, quiet: bool) -> None:
        if not (self._debug if quiet else self._info):
            return
        line = {"logger": REQUEST_LOGGER, **fields, "event": "request"}
        if request_id is not None:
            line["request_id"] = request_id
        line["level"] = "debug" if quiet else "info"
        line["timestamp"] = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
        self._emit(self._scrub(None, "", orjson.dumps(line)) + b"\n")


def _unbuffered(stream: Any) -> Callable[[bytes], None]:
    def emit(line: bytes) -> None:
        stream.write(line)
        stream.flush()

    return emit


class _State:
    """Process-wide logging state: whether configure() ran, and the request logger it made."""

    configured = False
    # Loggers are cached on first use, so the one the request hooks use is rebuilt by each
    # configure() call (tests reconfigure; production configures once).
    request: Any = None
    # Set when lines are JSON: the request line's own renderer (RequestLineWriter).
    request_line: RequestLineWriter | None = None


_state = _State()


def reset() -> None:
    """Forget ``configure`` (tests reconfigure a process; production never calls this)."""
    structlog.reset_defaults()
    _state.configured = False
    _state.request = None
    _state.request_line = None


def is_configured() -> bool:
    """Whether ``configure`` ran in this process (or its parent before fork)."""
    return _state.configured


def request_logger() -> FilteringBoundLogger:
    """The logger of the canonical request line, bound to the current configuration."""
    if _state.request is None:
        _state.request = get_logger(REQUEST_LOGGER)
    return cast(FilteringBoundLogger, _state.request)


def log_request(fields: dict[str, Any], request_id: str | None, *, quiet: bool = False) -> None:
    """The canonical line of one request, at info (debug when ``quiet``: probes and scrapes).
    Both ways a request is answered (Flask's hooks and the fast path) log through here."""
    writer = _state.request_line
    if writer is not None:
        writer.write(fields, request_id, quiet=quiet)
        return
    log = request_logger()
    if request_id is not None:
        fields = {**fields, "request_id": request_id}
    if quiet:
        log.debug("request", **fields)
    else:
        log.info("request", **fields)


def configure(settings: LogSettings, *, buffered: bool = False) -> None:
    """Configure structlog and route the standard library's records through the same renderer.
    ``buffered``: JSON lines are written in batches by a flusher thread (gunicorn workers)."""
    level = _LEVELS.get(settings.log_level, logging.INFO)
    as_json = use_json(settings.log_format)
    secret_values = getattr(settings, "secret_values", None)
    scrub = SecretScrubber(secret_values() if callable(secret_values) else ())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Processor
    if as_json:
        processors: list[Processor] = [
            *shared,
            _exception_dicts,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
            scrub,
        ]
        factory: Any = structlog.BytesLoggerFactory(sys.stdout.buffer)
        emit = _unbuffered(sys.stdout.buffer)
        if buffered:
            line_buffer = LineBuffer(sys.stdout.buffer)
            line_logger = BufferedLineLogger(line_buffer)
            emit = line_buffer.append

            def factory(*_args: Any) -> BufferedLineLogger:
                return line_logger

        renderer = structlog.processors.JSONRenderer(serializer=_json_line_for_stdlib)
    else:
        console = structlog.dev.ConsoleRenderer(
            colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        processors = [*shared, console, scrub]
        factory = structlog.PrintLoggerFactory(sys.stdout)  # a person is reading: no delay
        renderer = console
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )

    # Libraries (and Flask's own error log) use the standard library: same format, same stream.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared[:-1],
            structlog.stdlib.add_logger_name,
            redact_secrets,
            truncate_long_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([_exception_dicts] if as_json else []),
            renderer,
            scrub,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _state.configured = True
    _state.request = get_logger(REQUEST_LOGGER)
    _state.request_line = RequestLineWriter(level, emit, scrub) if as_json else None


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose lines carry ``logger=name`` (configured on first use)."""
    return compat.lazy_logger(name)
