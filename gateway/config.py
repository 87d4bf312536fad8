"""Configuration: TOML (CONTRACT.md) or the built-in embedded default, validated into frozen dataclasses.

Every problem names its key and the bad value; ``load_config`` raises ``ConfigError`` with all of them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.connector_config import validate_connector
from gateway.errors import ConfigError
from gateway.interest import RatePeriod

CONFIG_ENV = "PAYT_GATEWAY_CONFIG"
DEFAULT_CONFIG_NAME = "gateway.toml"
SOURCES = ("file", "exact_online", "twinfield", "moneybird", "eboekhouden")
FORMATS = ("payt-csv", "payt-xml", "auto")
IMPORT_MODES = ("scheduled", "on_delivery", "off")
KIND_POLICIES = ("import_and_send", "import_no_send", "skip")
DATE_ORDERS = ("dmy", "mdy")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ADMIN_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
TRANSPORTS = ("outbox", "smtp")
EMAIL_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")


@dataclass(frozen=True)
class SendingSettings:
    wait_minutes: int = 60
    slot_minutes: int = 30
    invoice_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")
    reminder_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    window: tuple[str, str] = ("08:00", "18:00")
    skip_holidays: bool = True  # national public holidays of the administration's country
    min_invoice_cents: int = 0  # an invoice whose open amount is below this is not sent
    max_age_months: int = 1  # an invoice dated more than this before its first import is too old to send


@dataclass(frozen=True)
class ReminderSettings:
    """DOMAIN.md §6. ``pre_reminder_days`` 0 = no pre-reminder; the minimum amounts are in cents."""

    first_after_days: int = 7
    count: int = 2
    interval_days: int = 14
    final_reminder: bool = True
    pre_reminder_days: int = 0
    payment_term_days: int = 7
    min_reminder_cents: int = 0
    min_final_reminder_cents: int = 0


@dataclass(frozen=True)
class GuardSettings:
    empty_file: bool = True
    max_close_ratio: float = 0.30
    max_close_min: int = 20


@dataclass(frozen=True)
class IgnoreSettings:
    """Exact values, ranges ``(1..7)`` or prefixes ``ABC*`` (DOMAIN.md §2)."""

    invoices: tuple[str, ...] = ()
    debtors: tuple[str, ...] = ()
    payment_conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindSettings:
    zero_amount: str = "import_no_send"
    prepaid: str = "import_no_send"
    credit_note: str = "import_and_send"


@dataclass(frozen=True)
class DocumentSettings:
    """How delivered PDFs are linked to invoices (DOMAIN.md §4).

    ``pattern`` is a regular expression searched in the file name's stem; its group ``number`` (or, without
    one, the whole match) is the invoice number. Empty: the stem must contain an invoice number, bounded by
    the stem's ends or by characters that are not letters or digits. ``required``: an invoice without a
    document is flagged "document missing" and is not sent.
    """

    pattern: str = ""
    required: bool = False


@dataclass(frozen=True)
class PullSettings:
    """Fetch files from the intermediary's own SFTP server (issue 4 item 6). The private key is the credential
    ``PULL_KEY`` of the administration, never a key of this file."""

    host: str
    user: str
    port: int = 22
    remote_dir: str = "."
    pattern: str = "*"
    poll_seconds: float = 300.0
    fingerprint: str = ""  # "SHA256:..." as ssh-keygen -l prints it
    known_hosts: Path | None = None  # an OpenSSH known_hosts file (relative to data_dir)
    after: str = "delete"  # delete | move | keep
    move_to: str = ""  # the remote folder for after = "move"
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class ExpectedSettings:
    """When an import of the administration is expected (issue 7 item 5).

    ``times`` (HH:MM in the administration's zone; empty: its ``import_times``) plus ``grace_minutes`` is the
    deadline by which a successful import must have happened since the previous deadline; past it the
    administration is overdue. ``enabled`` defaults to false for ``import_mode = "off"``.
    """

    enabled: bool = True
    times: tuple[str, ...] = ()
    grace_minutes: int = 120


@dataclass(frozen=True)
class Administration:
    code: str
    name: str
    source: str = "file"
    format: str = "payt-csv"
    import_mode: str = "scheduled"
    import_times: tuple[str, ...] = ("01:00",)
    country: str = "NL"
    currency: str = "EUR"
    timezone: str = "Europe/Amsterdam"
    date_order: str = "dmy"
    sending: SendingSettings = field(default_factory=SendingSettings)
    reminders: ReminderSettings = field(default_factory=ReminderSettings)
    guards: GuardSettings = field(default_factory=GuardSettings)
    ignore: IgnoreSettings = field(default_factory=IgnoreSettings)
    kinds: KindSettings = field(default_factory=KindSettings)
    documents: DocumentSettings = field(default_factory=DocumentSettings)
    require_done_marker: bool = False
    connector: Mapping[str, Any] = field(default_factory=dict)
    pull: PullSettings | None = None
    expected: ExpectedSettings = field(default_factory=ExpectedSettings)

    @property
    def expected_times(self) -> tuple[str, ...]:
        return self.expected.times or self.import_times


@dataclass(frozen=True)
class SftpSettings:
    """The embedded SFTP server (DESIGN.md "SFTP server hardening"). Sizes in bytes, times in seconds."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = 2222  # 0: any free port (the bound port is logged in sftp_started)
    host_key: Path = Path("ssh_host_ed25519_key")  # relative to data_dir; generated once, mode 0600
    max_file_bytes: int = 2 * 1024**3
    quota_bytes: int = 10 * 1024**3  # uploads in progress plus uploaded files not yet imported, per account
    max_sessions: int = 64
    idle_timeout: float = 900.0
    keepalive_seconds: float = 30.0
    login_timeout: float = 30.0
    failure_delay: float = 2.0  # after each failed login attempt
    max_failures: int = 5  # within failure_window: the address and the account are banned
    failure_window: float = 600.0
    ban_seconds: float = 900.0
    feedback_days: float = 30.0  # feedback files older than this are removed


@dataclass(frozen=True)
class SenderConfig:
    """``[sender]``: how messages leave. The SMTP password is a credential (``SMTP_PASSWORD``), never here."""

    transport: str = "outbox"
    from_address: str = "payt-gateway@localhost"
    from_name: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_ca_file: str = ""  # a private CA to verify the server's certificate with (default: the system's)
    timeout_seconds: float = 30.0
    retry_initial_seconds: float = 30.0  # transient failures: wait this, doubling, while the window is open
    retry_attempts: int = 5  # attempts per message within one pass
    batch_size: int = 100  # steps claimed per transaction


@dataclass(frozen=True)
class HttpSettings:
    """The /healthz and /metrics endpoint (loopback by default). On in the built-in default and when a file has
    an ``[http]`` table; a file without one has no endpoint (so several gateways on one host never collide)."""

    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = 9180  # 0: any free port (the bound port is logged in http_started)


@dataclass(frozen=True)
class RetentionSettings:
    """How long archived files are kept (issue 7 item 6); 7 years is the Dutch period for financial records."""

    enabled: bool = True
    archive_years: int = 7
    archive_days: int = 0  # extra days on top of the years (tests and stricter policies)
    interval_hours: float = 24.0  # how often the daemon purges


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    timezone: str = "Europe/Amsterdam"
    settle_seconds: float = 2.0
    sweep_seconds: float = 60.0
    stall_seconds: float = 900.0  # a worker without progress this long is stuck: the watchdog pings stop
    sftp: SftpSettings = field(default_factory=SftpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    sender: SenderConfig = field(default_factory=SenderConfig)
    administrations: Mapping[str, Administration] = field(default_factory=dict)
    source: str = "built-in default"
    # ``[[interest.statutory]]``: the statutory interest rates by period, ascending (gateway.interest)
    interest_rates: tuple[RatePeriod, ...] = ()

    @property
    def inbox_dir(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def claimed_dir(self) -> Path:
        """The private folder a file is renamed into when it is claimed (same filesystem as the inbox)."""
        return self.data_dir / "claimed"

    @property
    def outbox_dir(self) -> Path:
        """Where the ``outbox`` transport writes one ``.eml`` file per message."""
        return self.data_dir / "outbox"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _Reader:
    """Reads one TOML table, collecting problems as ``key: message`` instead of stopping at the first."""

    def __init__(self, table: Mapping[str, Any], prefix: str, problems: list[str]):
        self.table = table
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def bad(self, name: str, message: str) -> None:
        value = self.table.get(name)
        self.problems.append(f"{self.key(name)}: {message} (got {value!r})")

    def get(self, name: str, default: Any, check: Callable[[Any], str | None]) -> Any:
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        message = check(value)
        if message:
            self.bad(name, message)
            return default
        return value

    def text(self, name: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
        def check(v: Any) -> str | None:
            if not isinstance(v, str) or not v.strip():
                return "must be a non-empty string"
            if pattern and not pattern.match(v):
                return f"must match {pattern.pattern}"
            return None

        return str(self.get(name, default, check))

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        return str(self.get(name, default, lambda v: None if v in choices else f"must be one of {', '.join(choices)}"))

    def boolean(self, name: str, default: bool) -> bool:
        return bool(self.get(name, default, lambda v: None if isinstance(v, bool) else "must be true or false"))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def check(v: Any) -> str | None:
            ok = isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
            return None if ok else f"must be a whole number from {low} to {high}"

        return int(self.get(name, default, check))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        def check(v: Any) -> str | None:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high
            return None if ok else f"must be a number from {low} to {high}"

        return float(self.get(name, default, check))

    def cents(self, name: str, default: int) -> int:
        """A non-negative amount (``"12.50"`` or a number) as whole cents."""

        def parse(v: Any) -> int | None:
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                return None
            try:
                amount = Decimal(str(v).strip())
            except InvalidOperation:
                return None
            if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
                return None
            return int(amount * 100)

        value = self.get(name, None, lambda v: None if parse(v) is not None else 'must be an amount such as "12.50"')
        return default if value is None else int(parse(value) or 0)

    def strings(
        self,
        name: str,
        default: tuple[str, ...],
        item: Callable[[str], object] | None = None,
        what: str = "strings",
    ) -> tuple[str, ...]:
        def check(v: Any) -> str | None:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                return f"must be a list of {what}"
            if item and not all(item(x) for x in v):
                return f"must be a list of {what}"
            return None

        return tuple(self.get(name, list(default), check))

    def timezone(self, name: str, default: str) -> str:
        def check(v: Any) -> str | None:
            if not isinstance(v, str):
                return "must be an IANA time zone name such as Europe/Amsterdam"
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                return "is not a known IANA time zone"
            return None

        return str(self.get(name, default, check))

    def table_of(self, name: str) -> Mapping[str, Any]:
        self.seen.add(name)
        value = self.table.get(name, {})
        if not isinstance(value, dict):
            self.bad(name, "must be a table")
            return {}
        return value

    def finish(self, extra_allowed: bool = False) -> None:
        if extra_allowed:
            return
        for name in self.table:
            if name not in self.seen:
                self.problems.append(f"{self.key(name)}: unknown key")


def _sending(table: Mapping[str, Any], prefix: str, problems: list[str]) -> SendingSettings:
    r = _Reader(table, prefix, problems)
    d = SendingSettings()
    days = lambda x: x in WEEKDAYS  # noqa: E731
    window = r.strings("window", d.window, HHMM.match, "two times HH:MM")
    if len(window) != 2 or window[0] >= window[1]:
        r.bad("window", "must be [start, end] with start before end")
        window = d.window
    s = SendingSettings(
        wait_minutes=r.integer("wait_minutes", d.wait_minutes, 0, 7 * 24 * 60),
        slot_minutes=r.integer("slot_minutes", d.slot_minutes, 1, 24 * 60),
        invoice_days=r.strings("invoice_days", d.invoice_days, days, "weekday names mon..sun"),
        reminder_days=r.strings("reminder_days", d.reminder_days, days, "weekday names mon..sun"),
        window=(window[0], window[1]),
        skip_holidays=r.boolean("skip_holidays", d.skip_holidays),
        min_invoice_cents=r.cents("min_invoice_amount", d.min_invoice_cents),
        max_age_months=r.integer("max_age_months", d.max_age_months, 0, 1200),
    )
    if (24 * 60) % s.slot_minutes:
        r.bad("slot_minutes", "must divide a day evenly (for example 15, 30 or 60)")
    r.finish()
    return s


def _reminders(table: Mapping[str, Any], prefix: str, problems: list[str]) -> ReminderSettings:
    r = _Reader(table, prefix, problems)
    d = ReminderSettings()
    s = ReminderSettings(
        first_after_days=r.integer("first_after_days", d.first_after_days, 0, 365),
        count=r.integer("count", d.count, 0, 4),
        interval_days=r.integer("interval_days", d.interval_days, 1, 365),
        final_reminder=r.boolean("final_reminder", d.final_reminder),
        pre_reminder_days=r.integer("pre_reminder_days", d.pre_reminder_days, 0, 365),
        payment_term_days=r.integer("payment_term_days", d.payment_term_days, 1, 365),
        min_reminder_cents=r.cents("min_reminder_amount", d.min_reminder_cents),
        min_final_reminder_cents=r.cents("min_final_reminder_amount", d.min_final_reminder_cents),
    )
    r.finish()
    return s


def _sender(table: Mapping[str, Any], problems: list[str]) -> SenderConfig:
    r = _Reader(table, "sender", problems)
    d = SenderConfig()
    s = SenderConfig(
        transport=r.choice("transport", d.transport, TRANSPORTS),
        from_address=r.text("from_address", d.from_address, EMAIL_ADDRESS),
        from_name=str(r.get("from_name", d.from_name, lambda v: None if isinstance(v, str) else "must be a string")),
        smtp_host=r.text("smtp_host", d.smtp_host),
        smtp_port=r.integer("smtp_port", d.smtp_port, 1, 65535),
        smtp_starttls=r.boolean("smtp_starttls", d.smtp_starttls),
        smtp_username=str(
            r.get("smtp_username", d.smtp_username, lambda v: None if isinstance(v, str) else "must be a string")
        ),
        smtp_ca_file=str(
            r.get("smtp_ca_file", d.smtp_ca_file, lambda v: None if isinstance(v, str) else "must be a file path")
        ),
        timeout_seconds=r.number("timeout_seconds", d.timeout_seconds, 0.1, 600.0),
        retry_initial_seconds=r.number("retry_initial_seconds", d.retry_initial_seconds, 0.0, 3600.0),
        retry_attempts=r.integer("retry_attempts", d.retry_attempts, 1, 100),
        batch_size=r.integer("batch_size", d.batch_size, 1, 1000),
    )
    if s.transport == "smtp" and "from_address" not in table:
        problems.append('sender.from_address: required with transport = "smtp"')
    r.finish()
    return s


def _guards(table: Mapping[str, Any], prefix: str, problems: list[str]) -> GuardSettings:
    r = _Reader(table, prefix, problems)
    d = GuardSettings()
    s = GuardSettings(
        empty_file=r.boolean("empty_file", d.empty_file),
        max_close_ratio=r.number("max_close_ratio", d.max_close_ratio, 0.0, 1.0),
        max_close_min=r.integer("max_close_min", d.max_close_min, 0, 10**9),
    )
    r.finish()
    return s


IGNORE_ENTRY = re.compile(r"^(\(\s*-?\d+\s*\.\.\s*-?\d+\s*\)|[^*]+\*?)$")


def _ignore(table: Mapping[str, Any], prefix: str, problems: list[str]) -> IgnoreSettings:
    r = _Reader(table, prefix, problems)
    what = "exact values, ranges (1..7) or prefixes ABC*"
    s = IgnoreSettings(
        invoices=r.strings("invoices", (), IGNORE_ENTRY.match, what),
        debtors=r.strings("debtors", (), IGNORE_ENTRY.match, what),
        payment_conditions=r.strings("payment_conditions", (), IGNORE_ENTRY.match, what),
    )
    r.finish()
    return s


def _kinds(table: Mapping[str, Any], prefix: str, problems: list[str]) -> KindSettings:
    r = _Reader(table, prefix, problems)
    d = KindSettings()
    s = KindSettings(
        zero_amount=r.choice("zero_amount", d.zero_amount, KIND_POLICIES),
        prepaid=r.choice("prepaid", d.prepaid, KIND_POLICIES),
        credit_note=r.choice("credit_note", d.credit_note, KIND_POLICIES),
    )
    r.finish()
    return s


def _documents(table: Mapping[str, Any], prefix: str, problems: list[str]) -> DocumentSettings:
    r = _Reader(table, prefix, problems)
    d = DocumentSettings()
    pattern = str(r.get("pattern", d.pattern, _regex_problem))
    s = DocumentSettings(pattern=pattern, required=r.boolean("required", d.required))
    r.finish()
    return s


def _regex_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a regular expression (a string)"
    try:
        compiled = re.compile(value)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    if compiled.groups and "number" not in compiled.groupindex:
        return "has groups but none named 'number' (use (?P<number>...) for the invoice number)"
    return None


def _interest(table: Mapping[str, Any], problems: list[str]) -> tuple[RatePeriod, ...]:
    """``[interest]``: ``[[interest.statutory]]`` entries ``from`` (a date), ``consumer`` and ``commercial`` (the
    yearly percentages of art. 6:119 and 6:119a BW), strictly ascending by ``from``."""
    r = _Reader(table, "interest", problems)
    entries = r.get("statutory", [], lambda v: None if isinstance(v, list) else "must be an array of tables")
    r.finish()
    periods: list[RatePeriod] = []
    for index, entry in enumerate(entries):
        prefix = f"interest.statutory[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{prefix}: must be a table with from, consumer and commercial (got {entry!r})")
            continue
        e = _Reader(entry, prefix, problems)
        start = e.get("from", None, _date_problem)
        rates = [e.get(name, None, _percent_problem) for name in ("consumer", "commercial")]
        for name in ("from", "consumer", "commercial"):
            if name not in entry:
                problems.append(f"{prefix}.{name}: required")
        e.finish()
        if start is None or None in rates:
            continue
        day = start if isinstance(start, date) else date.fromisoformat(start)
        if periods and day <= periods[-1].start:
            e.bad("from", f"must be after the previous entry's from ({periods[-1].start.isoformat()})")
            continue
        periods.append(RatePeriod(day, Decimal(str(rates[0])), Decimal(str(rates[1]))))
    return tuple(periods)


def _date_problem(value: Any) -> str | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return None
    if isinstance(value, str):
        try:
            date.fromisoformat(value)
            return None
        except ValueError:
            pass
    return 'must be a date such as 2026-01-01 or "2026-01-01"'


def _percent_problem(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100
    return None if ok else "must be a yearly percentage from 0 to 100, such as 4.0"


AFTER_PULL = ("delete", "move", "keep")
FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")


def _pull(table: Mapping[str, Any], prefix: str, data_dir: Path, problems: list[str]) -> PullSettings | None:
    if not table:
        return None
    r = _Reader(table, prefix, problems)
    d = PullSettings(host="", user="")
    known_hosts = r.text("known_hosts", "")
    s = PullSettings(
        host=r.text("host", ""),
        user=r.text("user", ""),
        port=r.integer("port", d.port, 1, 65535),
        remote_dir=r.text("remote_dir", d.remote_dir),
        pattern=r.text("pattern", d.pattern),
        poll_seconds=r.number("poll_seconds", d.poll_seconds, 1.0, 86400.0),
        fingerprint=r.text("fingerprint", "", FINGERPRINT),
        known_hosts=(data_dir / known_hosts) if known_hosts else None,
        after=r.choice("after", d.after, AFTER_PULL),
        move_to=r.text("move_to", ""),
        timeout_seconds=r.number("timeout_seconds", d.timeout_seconds, 1.0, 600.0),
    )
    for name in ("host", "user"):
        if name not in table:
            problems.append(f"{prefix}.{name}: required")
    if not s.fingerprint and s.known_hosts is None:
        problems.append(f"{prefix}: set fingerprint (SHA256:...) or known_hosts; an unpinned host key is refused")
    if s.after == "move" and not s.move_to:
        problems.append(f'{prefix}.move_to: required when after = "move"')
    r.finish()
    return s


def _sftp(table: Mapping[str, Any], data_dir: Path, enabled_default: bool, problems: list[str]) -> SftpSettings:
    r = _Reader(table, "sftp", problems)
    d = SftpSettings()
    day = 86400.0
    s = SftpSettings(
        enabled=r.boolean("enabled", enabled_default),
        bind=r.text("bind", d.bind),
        port=r.integer("port", d.port, 0, 65535),
        host_key=data_dir / r.text("host_key", str(d.host_key)),
        max_file_bytes=r.integer("max_file_bytes", d.max_file_bytes, 1, 2**50),
        quota_bytes=r.integer("quota_bytes", d.quota_bytes, 1, 2**50),
        max_sessions=r.integer("max_sessions", d.max_sessions, 1, 1000),
        idle_timeout=r.number("idle_timeout", d.idle_timeout, 1.0, day),
        keepalive_seconds=r.number("keepalive_seconds", d.keepalive_seconds, 0.0, 3600.0),
        login_timeout=r.number("login_timeout", d.login_timeout, 1.0, 600.0),
        failure_delay=r.number("failure_delay", d.failure_delay, 0.0, 60.0),
        max_failures=r.integer("max_failures", d.max_failures, 1, 1000),
        failure_window=r.number("failure_window", d.failure_window, 1.0, day),
        ban_seconds=r.number("ban_seconds", d.ban_seconds, 0.0, 30 * day),
        feedback_days=r.number("feedback_days", d.feedback_days, 0.0, 3650.0),
    )
    _check_secrets_absent(table, "sftp", problems)
    r.finish()
    return s


def _expected(table: Mapping[str, Any], prefix: str, import_mode: str, problems: list[str]) -> ExpectedSettings:
    r = _Reader(table, prefix, problems)
    d = ExpectedSettings()
    s = ExpectedSettings(
        enabled=r.boolean("enabled", import_mode != "off"),
        times=r.strings("times", d.times, HHMM.match, "times HH:MM"),
        grace_minutes=r.integer("grace_minutes", d.grace_minutes, 0, 7 * 24 * 60),
    )
    r.finish()
    return s


def _http(table: Mapping[str, Any], enabled_default: bool, problems: list[str]) -> HttpSettings:
    r = _Reader(table, "http", problems)
    d = HttpSettings()
    s = HttpSettings(
        enabled=r.boolean("enabled", enabled_default),
        bind=r.text("bind", d.bind),
        port=r.integer("port", d.port, 0, 65535),
    )
    r.finish()
    return s


def _retention(table: Mapping[str, Any], problems: list[str]) -> RetentionSettings:
    r = _Reader(table, "retention", problems)
    d = RetentionSettings()
    s = RetentionSettings(
        enabled=r.boolean("enabled", d.enabled),
        archive_years=r.integer("archive_years", d.archive_years, 0, 100),
        archive_days=r.integer("archive_days", d.archive_days, 0, 36500),
        interval_hours=r.number("interval_hours", d.interval_hours, 0.01, 24.0 * 31),
    )
    if s.archive_years == 0 and s.archive_days == 0:
        problems.append("retention: the period (archive_years and archive_days) must be at least one day")
    r.finish()
    return s


def _administration(
    code: str, table: Mapping[str, Any], gateway_tz: str, data_dir: Path, problems: list[str]
) -> Administration:
    prefix = f"administrations.{code}"
    if not ADMIN_CODE.match(code):
        problems.append(f"{prefix}: the administration code must be 1-64 letters, digits, '_', '.' or '-'")
    r = _Reader(table, prefix, problems)
    d = Administration(code=code, name=code)
    source = r.choice("source", d.source, SOURCES)
    admin = Administration(
        code=code,
        name=r.text("name", code),
        source=source,
        format=r.choice("format", d.format, FORMATS),
        import_mode=r.choice("import_mode", d.import_mode, IMPORT_MODES),
        import_times=r.strings("import_times", d.import_times, HHMM.match, "times HH:MM"),
        country=r.text("country", d.country, re.compile(r"^[A-Z]{2}$")),
        currency=r.text("currency", d.currency, re.compile(r"^[A-Z]{3}$")),
        timezone=r.timezone("timezone", gateway_tz),
        date_order=r.choice("date_order", d.date_order, DATE_ORDERS),
        sending=_sending(r.table_of("sending"), f"{prefix}.sending", problems),
        reminders=_reminders(r.table_of("reminders"), f"{prefix}.reminders", problems),
        guards=_guards(r.table_of("guards"), f"{prefix}.guards", problems),
        ignore=_ignore(r.table_of("ignore"), f"{prefix}.ignore", problems),
        kinds=_kinds(r.table_of("kinds"), f"{prefix}.kinds", problems),
        documents=_documents(r.table_of("documents"), f"{prefix}.documents", problems),
        require_done_marker=r.boolean("require_done_marker", d.require_done_marker),
        connector=_connector(source, r.table_of("connector"), f"{prefix}.connector", problems),
        pull=_pull(r.table_of("pull"), f"{prefix}.pull", data_dir, problems),
    )
    admin = replace(
        admin, expected=_expected(r.table_of("expected"), f"{prefix}.expected", admin.import_mode, problems)
    )
    if source != "file" and "connector" not in table:
        problems.append(f"{prefix}.connector: an API source ({source}) needs a connector table")
    if source != "file" and admin.import_mode == "on_delivery":
        r.bad("import_mode", "on_delivery is for file sources; an API source is polled (scheduled or off)")
    r.finish()
    return admin


def _connector(source: str, table: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    """Per-vendor validation (gateway.connector_config); secret-looking keys are reported once, above."""
    return validate_connector(source, {k: v for k, v in table.items() if not SECRET_KEYS.search(k)}, prefix, problems)


def build_config(data: Mapping[str, Any], base_dir: Path, source: str) -> Config:
    """Validate a parsed TOML document. Relative paths are relative to ``base_dir`` (the file's folder)."""
    problems: list[str] = []
    top = _Reader(data, "", problems)
    gw = _Reader(top.table_of("gateway"), "gateway", problems)
    data_dir = (base_dir / gw.text("data_dir", ".")).resolve()
    database_url = gw.text("database_url", "sqlite:///gateway.db")
    timezone = gw.timezone("timezone", "Europe/Amsterdam")
    settle = gw.number("settle_seconds", 2.0, 0.0, 3600.0)
    sweep = gw.number("sweep_seconds", 60.0, 1.0, 86400.0)
    stall = gw.number("stall_seconds", 900.0, 0.5, 86400.0)
    gw.finish()
    # The built-in default (no file) is the embedded setup of CONTRACT.md, SFTP included; a file says so itself.
    sftp = _sftp(top.table_of("sftp"), data_dir, source == "built-in default", problems)
    http = _http(top.table_of("http"), source == "built-in default" or "http" in data, problems)
    retention = _retention(top.table_of("retention"), problems)
    sender_table = top.table_of("sender")
    _check_secrets_absent(sender_table, "sender", problems)
    sender = _sender({k: v for k, v in sender_table.items() if not _is_secret_key(k)}, problems)
    if sender.smtp_ca_file:  # relative to the configuration file's folder
        sender = replace(sender, smtp_ca_file=str((base_dir / sender.smtp_ca_file).resolve()))
    admins_table = top.table_of("administrations")
    admins: dict[str, Administration] = {}
    for code, table in admins_table.items():
        if not isinstance(table, dict):
            problems.append(f"administrations.{code}: must be a table")
            continue
        _check_secrets_absent(table.get("connector", {}), f"administrations.{code}.connector", problems)
        _check_secrets_absent(table.get("pull", {}), f"administrations.{code}.pull", problems)
        admins[code] = _administration(code, table, timezone, data_dir, problems)
    interest_rates = _interest(top.table_of("interest"), problems)
    top.finish()
    if problems:
        raise ConfigError(problems)
    return Config(
        data_dir=data_dir,
        database_url=resolve_database_url(database_url, data_dir),
        timezone=timezone,
        settle_seconds=settle,
        sweep_seconds=sweep,
        stall_seconds=stall,
        sftp=sftp,
        http=http,
        retention=retention,
        sender=sender,
        administrations=admins,
        source=source,
        interest_rates=interest_rates,
    )


SECRET_KEYS = re.compile(r"(password|secret|token|security_code|private_key|passphrase)", re.IGNORECASE)


def _is_secret_key(key: str) -> bool:
    return bool(SECRET_KEYS.search(key)) and key != "smtp_username"


def _check_secrets_absent(table: Any, prefix: str, problems: list[str]) -> None:
    """Secrets never live in the configuration file (CONTRACT.md); refuse them instead of using them."""
    if not isinstance(table, dict):
        return
    for key in table:
        if _is_secret_key(key):
            problems.append(
                f"{prefix}.{key}: secrets do not belong in the configuration file; use a systemd credential "
                f"or the environment variable PAYT_GATEWAY_<CODE>_<NAME>"
            )


def resolve_database_url(url: str, data_dir: Path) -> str:
    """Make a relative SQLite path relative to data_dir (CONTRACT.md)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str((data_dir / rest).resolve())
    return url


def find_config_path(explicit: str | None, cwd: Path | None = None) -> Path | None:
    """``--config``, else ``$PAYT_GATEWAY_CONFIG``, else ``./gateway.toml`` if present, else None (built-in)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(explicit: str | None = None, cwd: Path | None = None) -> Config:
    path = find_config_path(explicit, cwd)
    if path is None:
        return build_config({}, cwd or Path.cwd(), "built-in default")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: the configuration file is not UTF-8"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return build_config(data, path.resolve().parent, str(path))
