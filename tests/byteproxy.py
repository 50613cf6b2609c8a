"""A loopback TCP proxy that counts the bytes each way: what a client sends to a server
(request lines, headers and bodies, as on the wire) and what it gets back.

A client given the proxy's URL as its endpoint reaches the node through it; the Host header
it sends names the proxy, so URLs the node builds from it (the Xet `casUrl`, fetch URLs)
lead back through the proxy too. Used to measure what an upload really sends.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

_PIECE = 1 << 16
_BACKLOG = 64
_CONNECT_TIMEOUT = 10.0
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Traffic:
    """Bytes counted since the last `reset`: client to server (`sent`), back (`received`)."""

    sent: int
    received: int
    connections: int


class ByteCountingProxy:
    """Forwards each connection to 127.0.0.1:`target_port` faithfully, counting bytes."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(_BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sent = self._received = self._connections = 0
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def traffic(self) -> Traffic:
        with self._lock:
            return Traffic(self._sent, self._received, self._connections)

    def reset(self) -> None:
        """Start counting from zero (bytes of connections already open count from now on)."""
        with self._lock:
            self._sent = self._received = self._connections = 0

    def _count(self, upstream: bool, n: int) -> None:
        with self._lock:
            if upstream:
                self._sent += n
            else:
                self._received += n

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target, timeout=_CONNECT_TIMEOUT)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._connections += 1
                self._open.update((client, server))
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, upstream), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        """Copy one direction until either side closes; then close both."""
        try:
            while data := source.recv(_PIECE):
                sink.sendall(data)
                self._count(upstream, len(data))
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._open.difference_update((source, sink))

    def close(self) -> None:
        """Stop accepting and cut every connection still open (their pumps then end)."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=_JOIN_TIMEOUT)
        with self._lock:
            still_open = list(self._open)
        for s in still_open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
