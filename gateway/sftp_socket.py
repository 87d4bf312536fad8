"""A socket that reads ahead, for paramiko's transport.

paramiko's packetizer reads each SSH packet with several exact-size ``recv`` calls (the first block, the
rest, the MAC), three or more system calls per packet; a stream of small SFTP requests then spends much of
its time in them. ``ReadAheadSocket.recv`` asks the kernel for up to ``chunk`` bytes at once and serves the
exact sizes from what it read. Everything else (``send``, ``settimeout``, ``close``, ``getpeername``, …) goes
to the socket itself. Timeouts behave as before: a ``recv`` with nothing buffered waits on the socket.
"""

from __future__ import annotations

import socket
from typing import Any

CHUNK = 256 * 1024


class ReadAheadSocket:
    def __init__(self, sock: socket.socket, chunk: int = CHUNK):
        self._sock = sock
        self._chunk = chunk
        self._buffer = b""
        self._offset = 0

    def recv(self, size: int) -> bytes:
        available = len(self._buffer) - self._offset
        if available <= 0:
            data = self._sock.recv(max(size, self._chunk))
            if len(data) <= size:
                return data  # everything asked for or less (b"" at the end of the stream)
            self._buffer, self._offset = data, 0
            available = len(data)
        end = self._offset + min(size, available)
        out = self._buffer[self._offset : end]
        self._offset = end
        if end == len(self._buffer):
            self._buffer, self._offset = b"", 0
        return out

    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
