"""A stop that a thread holds up: the log says where it is."""

from __future__ import annotations

import threading

from gateway.daemon import thread_stack


def blocked_here(event: threading.Event) -> None:
    event.wait(30)


def test_the_stack_of_a_waiting_thread_names_where_it_waits() -> None:
    release = threading.Event()
    thread = threading.Thread(target=blocked_here, args=(release,), daemon=True)
    thread.start()
    try:
        for _ in range(100):  # until it is inside the wait
            stack = thread_stack(thread)
            if "in wait" in stack:
                break
            release.wait(0.01)
        assert "in blocked_here" in stack and "event.wait(30)" in stack
    finally:
        release.set()
        thread.join(5)
    assert thread_stack(thread) == "(no stack: the thread has ended)"
