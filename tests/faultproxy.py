"""A loopback TCP proxy that injects faults: delay, drop, cut mid-stream, corrupt bytes.

Faults apply to the server-to-client direction of the next `times` connections, then the
proxy forwards faithfully. `down_on(marker)` makes the server behind it go down for good at
the first request holding `marker` (a path, a digest): that connection and every other one are
reset and the listener closes, so later connections are refused. Used instead of patching our
code to break a transfer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Fault:
    cut_after: int | None = None  # close both sides after this many response bytes
    corrupt_at: int | None = None  # flip one byte at this response offset
    delay: float = 0.0  # seconds before forwarding the first response byte
    drop: bool = False  # accept, then close without forwarding anything
    reply: bytes | None = None  # answer every request with these bytes instead of forwarding
    pause_after: int | None = None  # hold the response `pause` seconds after this many bytes
    pause: float = 0.0
    times: int = 1


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.faults_applied = 0
        self.paused = threading.Event()  # set when a response is held (`Fault.pause_after`)
        self._marker: bytes | None = None
        self._open: set[socket.socket] = set()  # both sides of every connection
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault

    def down_on(self, marker: bytes) -> None:
        """Go down (see the module docstring) at the first request that holds `marker`."""
        with self._lock:
            self._marker = marker

    def _asked(self, data: bytes) -> bool:
        """Whether this request data takes the server down (then it is down already)."""
        with self._lock:
            if self._marker is None or self._marker not in data:
                return False
            sockets, self._open = list(self._open), set()
        self.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True

    def _take_fault(self) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or fault.times <= 0:
                return None
            fault.times -= 1
            self.faults_applied += 1
            return fault

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            fault = self._take_fault()
            if fault is not None and fault.drop:
                client.close()
                continue
            if fault is not None and fault.reply is not None:
                threading.Thread(target=_reply, args=(client, fault.reply), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(
                target=_pump, args=(client, upstream, None, None, self._asked), daemon=True
            ).start()
            threading.Thread(
                target=_pump, args=(upstream, client, fault, self.paused), daemon=True
            ).start()

    def close(self) -> None:
        self._closed.set()
        try:  # wakes the accept (closing alone does not, on Linux: the join waited 5 s)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:  # not listening any more
            pass
        self._listener.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def _pump(
    source: socket.socket,
    sink: socket.socket,
    fault: Fault | None,
    paused: threading.Event | None = None,
    asked: Callable[[bytes], bool] | None = None,
) -> None:
    sent = 0
    try:
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        while True:
            data = source.recv(65536)
            if not data or (asked is not None and asked(data)):
                break
            if (
                fault is not None
                and fault.corrupt_at is not None
                and sent <= fault.corrupt_at < sent + len(data)
            ):
                i = fault.corrupt_at - sent
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            if (
                fault is not None
                and fault.pause_after is not None
                and sent <= fault.pause_after < sent + len(data)
            ):
                i = fault.pause_after - sent
                sink.sendall(data[:i])
                if paused is not None:
                    paused.set()
                time.sleep(fault.pause)
                data, sent = data[i:], sent + i
            if (
                fault is not None
                and fault.cut_after is not None
                and sent + len(data) >= fault.cut_after
            ):
                sink.sendall(data[: fault.cut_after - sent])
                break
            sink.sendall(data)
            sent += len(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def _reply(client: socket.socket, reply: bytes) -> None:
    try:
        client.settimeout(10)
        client.recv(65536)
        client.sendall(reply)
    except OSError:
        pass
    finally:
        client.close()
