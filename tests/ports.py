"""Loopback ports for node processes, safe when tests run in parallel (pytest-xdist workers, or
other suites on the machine), where another process may take a port between our look and a
child's bind.

`free_port` can only name a port that was free a moment ago, so a node process started on it
must be checked to be the one listening there (`listening`): a health check answered by some
other test's node would otherwise be taken for ours. `closed_port` holds its port for the test,
so "nothing listens there" stays true.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ADDRESS_IN_USE = "address already in use"  # uvicorn's log line when its bind fails


def free_port() -> int:
    """A port of 127.0.0.1 that was free when asked (another process may take it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A port bound and never listened on while the context lasts: connections to it are
    refused at once, and no other process can start listening there meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP socket listening on `port` of 127.0.0.1 (or of every
    address). Without /proc (not Linux) it cannot tell and says yes."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self/net/tcp").exists():
        return True
    try:
        inodes = {
            link[len("socket:[") : -1]
            for link in (_readlink(fd) for fd in (proc / "fd").iterdir())
            if link.startswith("socket:[")
        }
        table = (proc / "net" / "tcp").read_text()
    except OSError:  # the process is gone
        return False
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields[1] in wanted and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            return True
    return False


def _readlink(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed while we looked (the directory's own descriptor, for one)
        return ""
