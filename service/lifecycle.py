"""Process-wide lifecycle flags shared by the gunicorn hooks and the probes."""

from __future__ import annotations

import threading

# Set when the worker got SIGTERM: /readyz answers 503 while in-flight requests finish.
draining = threading.Event()
