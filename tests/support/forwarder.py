"""A TCP forwarder in this process that can hold traffic and move: what a lagging replica's
link, a proxy or a Kubernetes Service in front of Redis look like to a failover test
(tests/support/redis_sentinel.py)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from tests.support.servers import free_port


class _Pair:
    """One forwarded connection; ``replication``: a replica's link (it sent PSYNC/REPLCONF)."""

    def __init__(self) -> None:
        self.replication = False


class Forwarder:
    """Forwards 127.0.0.1:port to 127.0.0.1:target; ``hold()`` keeps what either side sends
    (reading it, so a closed side is still noticed: then what was held is dropped, never
    delivered), ``hold_replication()`` only that of replicas' links (the Sentinels' and
    clients' connections through it go on); ``retarget()`` moves new connections elsewhere and
    drops the current ones."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self.target = target
        self._held = threading.Event()
        self._held_replication = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True).start()

    def hold(self) -> None:
        self._held.set()

    def hold_replication(self) -> None:
        self._held_replication.set()

    def release(self) -> None:
        self._held.clear()
        self._held_replication.clear()

    def retarget(self, target: int) -> None:
        """Send new connections to ``target``; cut the current ones (clients reconnect)."""
        self.target = target
        self.cut()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            pair = _Pair()
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair, outbound), daemon=True
                ).start()

    def _holding(self, pair: _Pair) -> bool:
        return self._held.is_set() or (pair.replication and self._held_replication.is_set())

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair, outbound: bool) -> None:
        pending = bytearray()
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([src], [], [], 0.02)
                if ready:
                    data = src.recv(65536)
                    if not data:
                        break  # held bytes are dropped: the other side never gets them
                    pending += data
                    if outbound and (b"PSYNC" in data.upper() or b"REPLCONF" in data.upper()):
                        pair.replication = True
                if pending and not self._holding(pair):
                    dst.sendall(pending)
                    pending.clear()
        except (OSError, ValueError):
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()
