"""The read-ahead socket under paramiko's transport, over a real socket pair."""

from __future__ import annotations

import socket

import pytest

from gateway.sftp_socket import ReadAheadSocket


def test_exact_sizes_come_from_one_read_ahead() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = ReadAheadSocket(left, chunk=1024)
        right.sendall(b"0123456789" * 10)
        assert reader.recv(16) == b"0123456789012345"
        assert reader.buffered() == 84  # the whole 100 bytes arrived in one read
        assert reader.recv(4) == b"6789"
        assert reader.recv(1000) == b"0123456789" * 8  # never more than what is buffered
        assert reader.buffered() == 0


def test_a_read_larger_than_the_chunk_and_end_of_stream() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = ReadAheadSocket(left, chunk=8)
        right.sendall(b"abcdefghijkl")
        right.shutdown(socket.SHUT_WR)
        assert reader.recv(3) == b"abc"
        assert reader.recv(100) == b"defgh"  # rest of the first 8-byte read
        assert reader.recv(100) == b"ijkl"
        assert reader.recv(100) == b""  # the end of the stream, as a socket says it


def test_timeouts_and_other_calls_go_to_the_socket() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = ReadAheadSocket(left)
        reader.settimeout(0.05)
        assert left.gettimeout() == 0.05
        with pytest.raises(TimeoutError):
            reader.recv(16)
        right.sendall(b"xy")
        assert reader.recv(1) == b"x"
        assert reader.recv(1) == b"y"  # buffered: no wait
        reader.send(b"back")
        assert right.recv(4) == b"back"
        assert reader.fileno() == left.fileno()
