"""PostgreSQL connections do not wait for ever: a connect times out, dead peers are found by keepalives."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gateway.errors import TransientError
from gateway.store import PG_CONNECT_DEFAULTS, make_engine, transaction
from tests.conftest import PG_URL


@contextmanager
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (a server that hangs)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for s in held:
            s.close()


def connect_seconds(url: str) -> float:
    engine = make_engine(url)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="database unavailable"), transaction(engine):
            pass
    finally:
        engine.dispose()
    return time.monotonic() - started


@pytest.mark.postgres
def test_a_silent_server_fails_the_connect_after_the_default_timeout() -> None:
    with silent_server() as port:
        seconds = connect_seconds(f"postgresql+psycopg://gateway@127.0.0.1:{port}/test")
    assert PG_CONNECT_DEFAULTS["connect_timeout"] - 1 <= seconds < PG_CONNECT_DEFAULTS["connect_timeout"] + 10


@pytest.mark.postgres
def test_the_url_can_set_its_own_connect_timeout() -> None:
    with silent_server() as port:
        seconds = connect_seconds(f"postgresql+psycopg://gateway@127.0.0.1:{port}/test?connect_timeout=2")
    assert 1 <= seconds < 6


@pytest.mark.postgres
def test_every_connection_gets_the_defaults_unless_the_url_sets_them() -> None:
    engine = make_engine(f"{PG_URL}?keepalives_idle=30" if "?" not in PG_URL else f"{PG_URL}&keepalives_idle=30")
    try:
        with transaction(engine) as conn:
            params = conn.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert params["connect_timeout"] == "10"
    assert (params["keepalives"], params["keepalives_interval"], params["keepalives_count"]) == ("1", "10", "6")
    assert params["keepalives_idle"] == "30", "the URL's own value"
