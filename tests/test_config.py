"""Configuration: the built-in default, TOML files, and errors that name the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import build_config, find_config_path, load_config
from gateway.errors import ConfigError


def test_built_in_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYT_GATEWAY_CONFIG", raising=False)
    cfg = load_config(None, cwd=tmp_path)
    assert cfg.source == "built-in default"
    assert cfg.data_dir == tmp_path.resolve()
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'gateway.db'}"
    assert cfg.inbox_dir == tmp_path.resolve() / "inbox"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gateway.toml").write_text("", "utf-8")
    monkeypatch.delenv("PAYT_GATEWAY_CONFIG", raising=False)
    assert find_config_path(None, tmp_path) == tmp_path / "gateway.toml"
    monkeypatch.setenv("PAYT_GATEWAY_CONFIG", "/elsewhere.toml")
    assert find_config_path(None, tmp_path) == Path("/elsewhere.toml")
    assert find_config_path("x.toml", tmp_path) == Path("x.toml")


def test_full_administration(tmp_path: Path) -> None:
    cfg = build_config(
        {
            "gateway": {"data_dir": "data", "database_url": "postgresql+psycopg://u@127.0.0.1/db"},
            "administrations": {
                "ACME": {
                    "name": "Acme B.V.",
                    "guards": {"max_close_ratio": 0.5, "max_close_min": 3},
                    "ignore": {"invoices": ["TMP*", "(1..7)"]},
                    "kinds": {"zero_amount": "skip"},
                    "sending": {"window": ["09:00", "17:00"]},
                }
            },
        },
        tmp_path,
        "test",
    )
    acme = cfg.administrations["ACME"]
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.database_url.startswith("postgresql+psycopg://")
    assert (acme.guards.max_close_ratio, acme.guards.max_close_min) == (0.5, 3)
    assert acme.ignore.invoices == ("TMP*", "(1..7)")
    assert acme.kinds.zero_amount == "skip"
    assert acme.sending.window == ("09:00", "17:00")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gateway": {"settle_seconds": "soon"}}, "gateway.settle_seconds: must be a number"),
        ({"gateway": {"timezone": "Mars/Olympus"}}, "gateway.timezone: is not a known IANA time zone"),
        ({"gateway": {"databse_url": "x"}}, "gateway.databse_url: unknown key"),
        ({"administrations": {"A": {"format": "pdf"}}}, "administrations.A.format: must be one of"),
        ({"administrations": {"A": {"guards": {"max_close_ratio": 2}}}}, "administrations.A.guards.max_close_ratio"),
        ({"administrations": {"A": {"sending": {"window": ["18:00", "08:00"]}}}}, "administrations.A.sending.window"),
        ({"administrations": {"A": {"ignore": {"invoices": [1]}}}}, "administrations.A.ignore.invoices"),
        ({"administrations": {"A": {"source": "moneybird"}}}, "administrations.A.connector"),
        (
            {"administrations": {"A": {"source": "moneybird", "connector": {"token": "x"}}}},
            "administrations.A.connector.token: secrets do not belong",
        ),
        ({"administrations": {"bad code!": {}}}, "administrations.bad code!: the administration code"),
        ({"sender": {"smtp_password": "x"}}, "sender.smtp_password: secrets do not belong"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(data, tmp_path, "test")
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"gateway": {"settle_seconds": -1, "sweep_seconds": 0}}, tmp_path, "test")
    assert len(caught.value.problems) == 2


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n", "utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))


def test_the_quick_start_configuration_is_the_embedded_default_with_sftp_on_loopback() -> None:
    root = Path(__file__).parents[1]
    config = load_config(root / "gateway.toml")
    assert config.data_dir == root and config.database_url == f"sqlite:///{root / 'gateway.db'}"
    assert (config.sftp.enabled, config.sftp.bind, config.sftp.port) == (True, "127.0.0.1", 2222)
    assert (config.http.enabled, config.http.bind, config.http.port) == (True, "127.0.0.1", 9180)
    demo = config.administrations["DEMO"]
    assert (demo.source, demo.format, demo.import_mode) == ("file", "auto", "on_delivery")
