"""The command line (CONTRACT.md): ``payt-gateway [--config PATH] [--now ISO] [--json] COMMAND …``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import ConnectorError
from gateway import __version__
from gateway.app import DOCUMENT_READERS, PARSERS, App, build_app, fixed_clock, running_clock, system_clock
from gateway.cli_sftp import add_sftp_commands
from gateway.config import Administration, Config, load_config
from gateway.connect import DEFAULT_REDIRECT_URI, connect
from gateway.documents import document_format, list_documents
from gateway.errors import EX_CONFIG, ConfigError, RejectFile, TransientError
from gateway.holds import DEBTOR_FLAGS, clear_holds, find_target, set_hold
from gateway.imports import NO_FILE
from gateway.intake import is_marker_name, marker_name
from gateway.logs import configure_logging
from gateway.pipeline import ARCHIVE_KINDS, RunResult, copy_into_claimed
from gateway.render import problems_block, run_summary, table
from gateway.runs import get_run, list_runs, run_as_dict
from gateway.store import transaction
from gateway.transports import make_transport
from gateway.validate import validate_archive, validate_document, validate_file
from gateway.views import list_invoices, list_outbox, resolve_delivery
from parsers.detect import sniff

EX_UNAVAILABLE = 69


class Context:
    """What every command gets: the parsed arguments, the configuration and a lazily built app."""

    def __init__(self, args: argparse.Namespace, config: Config):
        self.args = args
        self.config = config
        self._app: App | None = None

    @property
    def app(self) -> App:
        if self._app is None:
            running = getattr(self.args, "func", None) is cmd_run
            self._app = build_app(self.config, clock_from(self.args.now, self.config, running))
        return self._app

    def emit(self, data: Any, human: str | Callable[[], str]) -> None:
        """``--json``: one JSON document (a long list one element per line: the C encoder, not indent's
        pure-Python one); else the human text, built only then when ``human`` is a function."""
        if self.args.json:
            if isinstance(data, list) and len(data) > 100:
                sys.stdout.write("[\n")
                last = len(data) - 1
                for i, item in enumerate(data):
                    sys.stdout.write(json.dumps(item, ensure_ascii=False, default=str) + (",\n" if i < last else "\n"))
                sys.stdout.write("]\n")
                return
            json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
            sys.stdout.write("\n")
        else:
            print(human() if callable(human) else human)


def parse_now(text: str) -> datetime:
    """``--now``: an ISO 8601 time; argparse turns a bad one into a usage error (exit 2)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def clock_from(moment: datetime | None, config: Config, running: bool = False) -> Callable[[], datetime]:
    """The clock of ``--now`` (a time without offset is in the gateway's zone): fixed for a command, starting
    there and running on for the daemon (``running``); else the system clock."""
    if moment is None:
        return system_clock
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(config.timezone))
    return running_clock(moment) if running else fixed_clock(moment)


def _admin(ctx: Context, code: str) -> Administration:
    admin = ctx.config.administrations.get(code)
    if admin is None:
        known = ", ".join(sorted(ctx.config.administrations)) or "none"
        raise ConfigError([f"administration {code!r} is not configured (configured: {known})"])
    return admin


# -- commands ------------------------------------------------------------------------------------------------


def cmd_run(ctx: Context) -> int:
    from gateway.daemon import Daemon

    return Daemon(ctx.app, load=lambda: load_config(ctx.args.config)).run()


def cmd_retention(ctx: Context) -> int:
    from gateway.retention import purge

    plan, runs = purge(ctx.config, ctx.app.engine, ctx.app.clock(), dry_run=ctx.args.dry_run)
    data = {
        "dry_run": ctx.args.dry_run,
        "kept_from": plan.keep_from.isoformat(),
        "files": [str(p) for p in plan.files],
        "bytes": plan.bytes,
        "folders": plan.days,
        "runs": runs,
        "undated": [str(p) for p in plan.undated],
    }
    verb = "would remove" if ctx.args.dry_run else "removed"
    human = [f"{verb} {len(plan.files)} archived file(s), {plan.bytes} bytes, archived before {plan.keep_from}"]
    human += [f"  {folder}/ ({count} file(s))" for folder, count in sorted(plan.days.items())]
    human.append(f"{runs} import run(s) {'point' if ctx.args.dry_run else 'pointed'} at these files; the runs stay")
    if plan.undated:
        human.append(f"{len(plan.undated)} file(s) outside a dated folder were left alone")
    ctx.emit(data, "\n".join(human))
    return 0


def cmd_check_config(ctx: Context) -> int:
    cfg = ctx.config
    make_transport(cfg.sender, cfg.outbox_dir).close()  # the SMTP credential must be there
    data = {
        "valid": True,
        "source": cfg.source,
        "data_dir": str(cfg.data_dir),
        "administrations": sorted(cfg.administrations),
        "errors": [],
    }
    ctx.emit(
        data,
        f"configuration OK ({cfg.source}): {len(cfg.administrations)} administration(s): "
        f"{', '.join(sorted(cfg.administrations)) or 'none'}; data_dir {cfg.data_dir}",
    )
    return 0


def cmd_validate(ctx: Context) -> int:
    admin = _admin(ctx, ctx.args.administration) if ctx.args.administration else Administration(code="", name="")
    configured = ctx.args.format or (admin.format if ctx.args.administration else "auto")
    source = Path(ctx.args.file)
    if not source.is_file():
        print(f"payt-gateway: {source}: no such file", file=sys.stderr)
        return 1

    def validate_one(path: Path, name: str) -> dict[str, Any]:
        """A document (PDF or UBL) or open items, as the pipeline would route the file delivered as ``name``."""
        doc_format = _document_format(path, name, ctx.args.format)
        if doc_format is not None:
            return validate_document(path, doc_format, DOCUMENT_READERS[doc_format], admin, name)
        return validate_file(path, configured, PARSERS, admin)

    with source.open("rb") as stream:
        kind = sniff(stream)
    archive = kind in ARCHIVE_KINDS
    result = validate_archive(source, kind, validate_one) if archive else validate_one(source, source.name)
    ctx.emit(result, "\n".join(_validation_lines(result)))
    return 0 if result["valid"] else 1


def _validation_lines(result: dict[str, Any]) -> list[str]:
    if "document" in result:
        human = [_document_head(result)]
    else:
        human = [
            f"{result['file']}: {'valid' if result['valid'] else 'INVALID'} ({result['format']}, "
            f"{result['rows']} rows, {result['detected']})"
        ]
    for title in ("errors", "warnings"):
        block = problems_block(result[title], title)
        if block:
            human.append(block)
    for member in result.get("members", []):
        human += ["", *_validation_lines(member)]
    return human


def _document_format(source: Path, name: str, given: str | None) -> str | None:
    """``pdf`` or ``ubl`` when ``--format`` says so, or, without ``--format`` (or with ``auto``), when the
    content (or a .pdf name) says so, as in the pipeline."""
    if given and given != "auto":
        return given if given in DOCUMENT_READERS else None
    with source.open("rb") as stream:
        return document_format(sniff(stream), name)


def _document_head(result: dict[str, Any]) -> str:
    doc = result["document"]
    if doc is None:
        head = f"{result['file']}: INVALID ({result['format']})"
    elif doc["number"] is not None:
        head = f"{result['file']}: valid ({result['format']}; names invoice {doc['number']})"
    elif doc["candidates"]:
        head = f"{result['file']}: valid ({result['format']}; the file name may name: {', '.join(doc['candidates'])})"
    else:
        head = f"{result['file']}: valid ({result['format']}; the file name names no invoice number)"
    return head


def cmd_ingest(ctx: Context) -> int:
    admin = _admin(ctx, ctx.args.administration)
    source = Path(ctx.args.file)
    if not source.is_file():
        print(f"payt-gateway: {source}: no such file", file=sys.stderr)
        return 1
    if is_marker_name(source.name):
        print(f"payt-gateway: {source}: a done marker is not data; ingest the file it marks", file=sys.stderr)
        return 1
    if admin.require_done_marker and not source.with_name(marker_name(source.name)).is_file():
        print(
            f"payt-gateway: administration {admin.code} requires done markers and {marker_name(source.name)} "
            "is not beside the file",
            file=sys.stderr,
        )
        return 1
    delivery = copy_into_claimed(ctx.config, ctx.args.administration, source, ctx.app.clock(), ctx.app.lease.token())
    return _emit_processed(ctx, ctx.app.pipeline.process(delivery))


def _emit_processed(ctx: Context, result: RunResult) -> int:
    """The run; for an archive with its members' runs under ``members``. 0 when all were performed."""
    run, human = _with_members(result)
    ctx.emit(run, human)
    return 0 if _all_performed(result) else 1


def _with_members(result: RunResult) -> tuple[dict[str, Any], str]:
    if result.run.get("format") not in ("zip", "gzip"):
        return result.run, run_summary(result.run)
    members = [_with_members(m) for m in result.members]
    human = "\n".join([run_summary(result.run), *(textwrap.indent(text, "  ") for _, text in members)])
    return {**result.run, "members": [run for run, _ in members]}, human


def _all_performed(result: RunResult) -> bool:
    return result.status == "performed" and all(_all_performed(m) for m in result.members)


IMPORT_COLUMNS = [
    ("run_id", "run"),
    ("administration", "admin"),
    ("status", "status"),
    ("started", "started"),
    ("rows", "rows"),
    ("errors", "err"),
    ("warnings", "warn"),
    ("file", "file"),
]


def _run_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "started": (r["started_at"] or "")[:16].replace("T", " "),
            "rows": r["counts"]["rows"],
            "errors": r["counts"]["errors"],
            "warnings": r["counts"]["warnings"],
        }
        for r in runs
    ]


def cmd_imports(ctx: Context) -> int:
    with transaction(ctx.app.engine, write=False) as conn:
        rows = list_runs(conn, now=ctx.app.clock(), administration=ctx.args.administration, days=ctx.args.days)
        runs = [run_as_dict(conn, r, with_problems=ctx.args.json) for r in rows]
    ctx.emit(runs, table(_run_rows(runs), IMPORT_COLUMNS, flexible="file"))
    return 0


def cmd_rejected(ctx: Context) -> int:
    action, run_id = ctx.args.action, ctx.args.run_id
    if action in ("show", "retry") and run_id is None:
        print(f"payt-gateway: rejected {action} needs a run id", file=sys.stderr)
        return 2
    if action == "show":
        with transaction(ctx.app.engine, write=False) as conn:
            row = get_run(conn, run_id)
            if row is None:
                print(f"payt-gateway: there is no import run {run_id}", file=sys.stderr)
                return 1
            run = run_as_dict(conn, row, limit=None)
        ctx.emit(run, run_summary(run))
        return 0
    if action == "retry":
        return _retry(ctx, run_id)
    with transaction(ctx.app.engine, write=False) as conn:
        rows = list_runs(
            conn,
            now=ctx.app.clock(),
            administration=ctx.args.administration,
            days=ctx.args.days,
            statuses=("rejected", "held", "failed"),
        )
        runs = [run_as_dict(conn, r, with_problems=ctx.args.json) for r in rows]
    listing = [{**r, "reason": r["reason"]} for r in _run_rows(runs)]
    ctx.emit(
        runs,
        table(
            listing,
            [
                ("run_id", "run"),
                ("administration", "admin"),
                ("status", "status"),
                ("file", "file"),
                ("reason", "reason"),
            ],
            flexible="reason",
        ),
    )
    return 0


def _retry(ctx: Context, run_id: int) -> int:
    with transaction(ctx.app.engine, write=False) as conn:
        row = get_run(conn, run_id)
    if row is not None and row.status in ("rejected", "failed") and row.file_name and not row.archived_path:
        print(f"payt-gateway: run {run_id}: its archived file is gone (see its notices: retention)", file=sys.stderr)
        return 1
    if row is None or row.status not in ("rejected", "failed") or not row.archived_path:
        print(f"payt-gateway: run {run_id} is not a rejected or failed file", file=sys.stderr)
        return 1
    _admin(ctx, row.administration)
    delivery = copy_into_claimed(
        ctx.config,
        row.administration,
        ctx.config.data_dir / row.archived_path,
        ctx.app.clock(),
        ctx.app.lease.token(),
        name=row.file_name,
        trigger="retry",
    )
    return _emit_processed(ctx, ctx.app.pipeline.process(delivery))


def cmd_release(ctx: Context) -> int:
    result = ctx.app.pipeline.release(ctx.args.run_id)
    ctx.emit(result.run, run_summary(result.run))
    return 0


def cmd_discard(ctx: Context) -> int:
    result = ctx.app.pipeline.discard(ctx.args.run_id)
    ctx.emit(result.run, run_summary(result.run))
    return 0


def cmd_import_now(ctx: Context) -> int:
    _admin(ctx, ctx.args.administration)
    result = ctx.app.imports.run(ctx.args.administration, "manual")
    ctx.emit(result.run, run_summary(result.run))
    return 0 if result.status == "performed" and result.run.get("reason") != NO_FILE else 1


def cmd_connect(ctx: Context) -> int:
    admin = _admin(ctx, ctx.args.administration)
    if admin.source == "file":
        print(
            f"payt-gateway: administration {admin.code} is a file source; there is nothing to connect", file=sys.stderr
        )
        return 1
    redirect_uri = ctx.args.redirect_uri or admin.connector.get("redirect_uri") or DEFAULT_REDIRECT_URI

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        connector = ctx.app.connectors(admin)
        try:
            reached = connect(
                connector,
                redirect_uri,
                code=ctx.args.code,
                timeout=ctx.args.timeout,
                say=say,
                read_line=sys.stdin.readline,
            )
        finally:
            connector.close()
    except ConnectorError as exc:
        print(f"payt-gateway: connect {admin.code}: {exc}", file=sys.stderr)
        return 1
    ctx.emit({"administration": admin.code, "source": admin.source, "connected": True, "detail": reached}, reached)
    return 0


def cmd_invoices(ctx: Context) -> int:
    with transaction(ctx.app.engine, write=False) as conn:
        rows = list_invoices(
            conn,
            ctx.config,
            ctx.app.clock(),
            administration=ctx.args.administration,
            status=ctx.args.status,
            limit=ctx.args.limit or None,
        )
    listing = (
        []
        if ctx.args.json
        else [
            {**r, "next": _next_text(r["next_send"], ctx.config), "doc": "+".join(r["documents"]) or None} for r in rows
        ]
    )
    columns = [
        ("administration", "admin"),
        ("number", "invoice"),
        ("debtor", "debtor"),
        ("due_date", "due"),
        ("amount_open", "open"),
        ("status", "status"),
        ("doc", "doc"),
        ("next", "next send"),
        ("blocked", "blocked"),
    ]
    ctx.emit(rows, lambda: table(listing, columns, flexible="blocked"))
    return 0


def cmd_documents(ctx: Context) -> int:
    with transaction(ctx.app.engine, write=False) as conn:
        rows = list_documents(
            conn, administration=ctx.args.administration, unlinked=ctx.args.unlinked, limit=ctx.args.limit or None
        )
    human = [{**r, "received": r["received_at"][:16].replace("T", " ")} for r in rows]
    columns = [
        ("id", "id"),
        ("administration", "admin"),
        ("kind", "kind"),
        ("invoice", "invoice"),
        ("current", "current"),
        ("received", "received"),
        ("file", "file"),
    ]
    ctx.emit(rows, table(human, columns, flexible="file"))
    return 0


def _local(iso: str, config: Config) -> str:
    """A stored UTC time as the operator reads it: in the gateway's zone, to the minute."""
    return datetime.fromisoformat(iso).astimezone(config.zone).strftime("%Y-%m-%d %H:%M")


def _next_text(next_send: dict[str, Any] | None, config: Config) -> str | None:
    if next_send is None:
        return None
    return f"{next_send['kind']} {next_send['sequence']} {_local(next_send['scheduled_for'], config)}"


def cmd_send_due(ctx: Context) -> int:
    report = ctx.app.make_sender().run_pass()
    data = report.as_dict()
    ctx.emit(
        data,
        f"pass {report.pass_id} at {data['now']}: sent {report.sent}, failed {report.failed}, bounced "
        f"{report.bounced}, unknown {report.unknown}, deferred {report.deferred}, released {report.released}"
        + (f"; {report.recovered_unknown} earlier claim(s) now unknown" if report.recovered_unknown else ""),
    )
    return 0


def cmd_outbox(ctx: Context) -> int:
    if ctx.args.action == "resolve":
        if ctx.args.id is None or ctx.args.sent == ctx.args.retry:
            print("payt-gateway: outbox resolve ID needs exactly one of --sent and --retry", file=sys.stderr)
            return 2
        with transaction(ctx.app.engine) as conn:
            result = resolve_delivery(conn, ctx.args.id, ctx.args.sent, ctx.app.clock())
        ctx.emit(result, f"delivery {result['id']}: {result['previous']} -> {result['status']}")
        return 0
    with transaction(ctx.app.engine, write=False) as conn:
        rows = list_outbox(
            conn,
            ctx.config,
            ctx.app.clock(),
            administration=ctx.args.administration,
            status=ctx.args.status,
            limit=ctx.args.limit or None,
        )
    listing = (
        [] if ctx.args.json else [{**r, "when": _local(r["sent_at"] or r["scheduled_for"], ctx.config)} for r in rows]
    )
    columns = [
        ("id", "id"),
        ("administration", "admin"),
        ("invoice", "invoice"),
        ("kind", "kind"),
        ("sequence", "#"),
        ("when", "when"),
        ("status", "status"),
        ("reason", "reason"),
    ]
    ctx.emit(rows, lambda: table(listing, columns, flexible="reason"))
    return 0


def cmd_pause(ctx: Context) -> int:
    return _pause(ctx, pause=True)


def cmd_resume(ctx: Context) -> int:
    return _pause(ctx, pause=False)


def _pause(ctx: Context, pause: bool) -> int:
    args = ctx.args
    _admin(ctx, args.administration)
    with transaction(ctx.app.engine) as conn:
        admin_id, scope, target, what = find_target(conn, args.administration, args.invoice, args.debtor)
        flag = "pause_reminders" if args.reminders_only else "pause"
        if pause:
            changed = int(set_hold(conn, admin_id, scope, target, flag, ctx.app.clock()))
        else:
            flags = ("pause_reminders",) if args.reminders_only else ("pause", "pause_reminders")
            changed = clear_holds(conn, admin_id, scope, target, flags)
    verb = "paused" if pause else "resumed"
    extent = " (reminders only)" if args.reminders_only else ""
    result = {"target": what, "action": "pause" if pause else "resume", "reminders_only": args.reminders_only}
    ctx.emit({**result, "changed": bool(changed)}, f"{what}: {verb}{extent}" + ("" if changed else " (no change)"))
    return 0


def cmd_debtor_flag(ctx: Context) -> int:
    args = ctx.args
    _admin(ctx, args.administration)
    with transaction(ctx.app.engine) as conn:
        admin_id, scope, target, what = find_target(conn, args.administration, None, args.debtor)
        flag = args.flag.replace("-", "_")
        if args.clear:
            changed = bool(clear_holds(conn, admin_id, scope, target, (flag,)))
        else:
            changed = set_hold(conn, admin_id, scope, target, flag, ctx.app.clock())
    state = "cleared" if args.clear else "set"
    ctx.emit({"target": what, "flag": flag, "set": not args.clear, "changed": changed}, f"{what}: {flag} {state}")
    return 0


# -- argument parsing --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payt-gateway",
        description="Import-and-send backbone for accounts-receivable software: watch folders, validation, "
        "reconcile, archive.",
    )
    parser.add_argument("--version", action="version", version=f"payt-gateway {__version__}")
    parser.add_argument(
        "--config",
        help="configuration file (default: $PAYT_GATEWAY_CONFIG, ./gateway.toml, else the built-in embedded default)",
    )
    parser.add_argument(
        "--now",
        type=parse_now,
        help="act as if this is the current time (ISO 8601; no offset = gateway zone); with run, the clock starts "
        "there and runs on",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[Context], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("run", cmd_run, "run the daemon in the foreground (SIGTERM/SIGINT stop gracefully)")
    add("check-config", cmd_check_config, "validate the configuration; exit 78 when it is invalid")
    p = add("validate", cmd_validate, "check a file against its spec; never touches the database")
    p.add_argument("file")
    p.add_argument(
        "--format",
        choices=["auto", *sorted(PARSERS), *DOCUMENT_READERS],
        help="the file's format; it must agree with the content (default: a PDF or UBL document by its content, "
        "else the administration's format, else auto: detected from the content)",
    )
    p.add_argument("--administration", help="validate with this administration's settings")
    p = add("ingest", cmd_ingest, "run one file through the pipeline, as if dropped in the inbox, then exit")
    p.add_argument("file")
    p.add_argument("--administration", required=True)
    p = add("imports", cmd_imports, "import runs, newest first")
    p.add_argument("--administration")
    p.add_argument("--days", type=int, default=31)
    p = add("rejected", cmd_rejected, "rejected, held and failed files with their reasons; show or retry one")
    p.add_argument("action", nargs="?", choices=["list", "show", "retry"], default="list")
    p.add_argument("run_id", nargs="?", type=int)
    p.add_argument("--administration")
    p.add_argument("--days", type=int, default=31)
    for name, func, text in (
        ("release", cmd_release, "apply a held snapshot (without the guards)"),
        ("discard", cmd_discard, "drop a held snapshot"),
    ):
        p = add(name, func, text)
        p.add_argument("run_id", type=int)
    p = add("import-now", cmd_import_now, "poll the administration's connector (or take its newest delivered file) now")
    p.add_argument("administration", metavar="CODE")
    p = add("connect", cmd_connect, "one-time authorisation of an API connector (OAuth code flow or credentials)")
    p.add_argument("administration", metavar="CODE")
    p.add_argument("--code", help="the authorisation code (or the whole redirect URL) instead of waiting for it")
    p.add_argument(
        "--redirect-uri",
        help="the redirect URI registered with the vendor (default: the connector's "
        "redirect_uri, else http://127.0.0.1:8765/callback, served here)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the redirect (default 300)")
    p = add("invoices", cmd_invoices, "invoices with their status")
    p.add_argument("--administration")
    p.add_argument("--status", choices=["open", "paid", "all"], default="open")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (0 = all)")
    p = add("documents", cmd_documents, "delivered PDF and UBL documents, newest first, and their invoices")
    p.add_argument("--administration")
    p.add_argument("--unlinked", action="store_true", help="only documents whose invoice has not arrived")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (0 = all)")
    p = add(
        "retention",
        cmd_retention,
        "remove archived files older than the retention period ([retention]; default 7 years); --now applies",
    )
    p.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    add_sftp_commands(sub)
    add("send-due", cmd_send_due, "run the sender once: send every message that is due now, then exit")
    p = add(
        "outbox",
        cmd_outbox,
        "planned, held, sent and failed messages; `outbox resolve ID --sent|--retry` settles an unknown one",
    )
    p.add_argument("action", nargs="?", choices=["list", "resolve"], default="list")
    p.add_argument("id", nargs="?", type=int, help="the delivery id (resolve)")
    p.add_argument("--administration")
    p.add_argument("--status", choices=["scheduled", "held", "sending", "sent", "failed", "cancelled", "unknown"])
    p.add_argument("--limit", type=int, default=1000, help="at most this many (0 = all)")
    p.add_argument("--sent", action="store_true", help="resolve: it did go out; never send it again")
    p.add_argument("--retry", action="store_true", help="resolve: it did not go out; send it at the next pass")
    for name, func, text in (
        ("pause", cmd_pause, "pause sending for an administration, a debtor or an invoice (at once)"),
        ("resume", cmd_resume, "resume what pause stopped"),
    ):
        p = add(name, func, text)
        p.add_argument("--administration", required=True)
        target = p.add_mutually_exclusive_group()
        target.add_argument("--invoice", help="an invoice number")
        target.add_argument("--debtor", help="a debtor code")
        p.add_argument("--reminders-only", action="store_true", help="only reminders (the invoice itself still goes)")
    p = add("debtor-flag", cmd_debtor_flag, "set or clear a debtor's 'no invoices' or 'no final reminder' flag")
    p.add_argument("flag", choices=[f.replace("_", "-") for f in DEBTOR_FLAGS])
    p.add_argument("--administration", required=True)
    p.add_argument("--debtor", required=True)
    p.add_argument("--clear", action="store_true", help="clear the flag instead of setting it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors, --help and --version: argparse has printed what to say
        return exc.code if isinstance(exc.code, int) else 2
    daemon = args.command == "run"
    configure_logging(sys.stdout if daemon else sys.stderr)
    ctx: Context | None = None
    try:
        config = load_config(args.config)
        ctx = Context(args, config)
        code = int(args.func(ctx))
    except ConfigError as exc:
        if args.json and args.command == "check-config":
            json.dump({"valid": False, "errors": exc.problems}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        for problem in exc.problems:
            print(f"payt-gateway: configuration error: {problem}", file=sys.stderr)
        return EX_CONFIG
    except LookupError as exc:
        print(f"payt-gateway: {exc.args[0]}", file=sys.stderr)
        return 1
    except TransientError as exc:
        print(f"payt-gateway: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except RejectFile as exc:
        print(f"payt-gateway: {exc}", file=sys.stderr)
        return 1
    finally:
        if ctx is not None and ctx._app is not None:
            ctx._app.lease.release()
    return code


if __name__ == "__main__":
    sys.exit(main())
