"""The sender's migration matches its table descriptions; the [sender] configuration is validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from gateway.config import SenderConfig, build_config
from gateway.errors import ConfigError
from gateway.tables import metadata

SENDER_TABLES = {"deliveries", "sender_passes", "holds", "bounces"}


def test_migration_0004_creates_what_tables_describe(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    ours = [d for d in diff if any(t in repr(d) for t in SENDER_TABLES)]
    assert ours == []


def test_sender_configuration(tmp_path: Path) -> None:
    assert build_config({}, tmp_path, "x").sender == SenderConfig()
    cfg = build_config(
        {
            "sender": {
                "transport": "smtp",
                "from_address": "facturen@acme.nl",
                "smtp_host": "mail.acme.nl",
                "smtp_port": 2525,
                "smtp_username": "gw",
                "smtp_ca_file": "ca.pem",
            },
            "administrations": {
                "ACME": {
                    "sending": {"min_invoice_amount": "5.00", "skip_holidays": False},
                    "reminders": {"pre_reminder_days": 3, "min_reminder_amount": 10, "payment_term_days": 14},
                }
            },
        },
        tmp_path,
        "x",
    )
    assert cfg.sender.transport == "smtp" and cfg.sender.smtp_port == 2525
    assert cfg.sender.smtp_ca_file == str(tmp_path.resolve() / "ca.pem")
    admin = cfg.administrations["ACME"]
    assert admin.sending.min_invoice_cents == 500 and admin.sending.skip_holidays is False
    assert admin.reminders.min_reminder_cents == 1000 and admin.reminders.pre_reminder_days == 3
    with pytest.raises(ConfigError) as bad:
        build_config(
            {
                "sender": {"transport": "pigeon", "smtp_password": "x", "smtp_prot": 25},
                "administrations": {"A": {"sending": {"min_invoice_amount": "1.001"}}},
            },
            tmp_path,
            "x",
        )
    text = "\n".join(bad.value.problems)
    assert "sender.transport: must be one of outbox, smtp" in text
    assert "sender.smtp_password: secrets do not belong in the configuration file" in text
    assert "sender.smtp_prot: unknown key" in text
    assert "administrations.A.sending.min_invoice_amount: must be an amount" in text
    with pytest.raises(ConfigError) as bad:
        build_config({"sender": {"transport": "smtp"}}, tmp_path, "x")
    assert bad.value.problems == ['sender.from_address: required with transport = "smtp"']
