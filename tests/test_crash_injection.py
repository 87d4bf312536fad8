"""The short form of the crash injection (benchmarks/crash_inject.py has the long one): 10 SIGKILLs of the
daemon while files arrive and sends are due; the end state equals a crash-free run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash_harness import Plan, compare, crash_free, sqlite_url, with_kills

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_ten_kills_end_in_the_crash_free_state(tmp_path: Path) -> None:
    plan = Plan(preloaded_invoices=400, invoices_each=60, pdfs_each=15, copies=5)
    reference, reference_messages = crash_free(tmp_path / "ref", sqlite_url(tmp_path / "ref"), plan)
    outcome, (crashed, messages) = with_kills(tmp_path / "crashed", sqlite_url(tmp_path / "crashed"), plan, kills=10)
    print(outcome.as_dict())
    assert outcome.kills == 10
    assert compare(reference, crashed) == []
    assert reference["deliveries"], "messages were due"
    assert set(messages) == set(reference_messages), "the same messages went out, each once"
    assert set(messages.values()) == {1}
