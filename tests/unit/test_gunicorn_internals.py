"""The gunicorn internals service/gunicorn_conf.py's stop-signal handling relies on (gunicorn 27):
a gunicorn upgrade that moves them fails here, not as a Ctrl-C that hangs again."""

from __future__ import annotations

import inspect

from gunicorn.arbiter import Arbiter
from gunicorn.workers import gthread


def test_the_arbiter_signal_handler_only_queues_into_sig_queue() -> None:
    source = inspect.getsource(Arbiter.signal)
    assert "self.SIG_QUEUE.put_nowait(sig)" in source


def test_gthread_quits_by_calling_the_pool_shutdown_from_the_handler() -> None:
    """The reason for our own SIGQUIT handler (cpython#121649)."""
    assert "self.tpool.shutdown" in inspect.getsource(gthread.ThreadWorker.handle_quit)


def test_gthread_workers_have_a_method_queue_that_wakes_their_poll() -> None:
    assert "self.method_queue = PollableMethodQueue()" in inspect.getsource(
        gthread.ThreadWorker.__init__
    )
    assert callable(gthread.PollableMethodQueue.defer)
    assert "while self.alive:" in inspect.getsource(gthread.ThreadWorker.run)
