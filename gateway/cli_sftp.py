"""``payt-gateway sftp-user …``: SFTP accounts of the embedded server (CONTRACT.md commands)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.render import table
from gateway.store import transaction

if TYPE_CHECKING:
    from gateway.cli import Context
    from gateway.sftp_keys import PublicKey


def read_keys(files: list[str]) -> list[PublicKey]:
    from gateway.sftp_keys import PublicKeyError, parse_public_key

    keys = []
    for name in files:
        try:
            text = Path(name).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{name}: cannot read the public key file: {exc}") from exc
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise ValueError(f"{name}: no public key in the file")
        try:
            keys += [parse_public_key(line) for line in lines]
        except PublicKeyError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    return keys


def read_password() -> str:
    """The first line of stdin (``--password-stdin``); never an argument, so it stays out of ps and history."""
    return sys.stdin.readline().rstrip("\r\n")


def _check_administrations(ctx: Context, codes: list[str]) -> None:
    unknown = [c for c in codes if c not in ctx.config.administrations]
    if unknown:
        known = ", ".join(sorted(ctx.config.administrations)) or "none"
        raise ConfigError([f"administration {c!r} is not configured (configured: {known})" for c in unknown])


def cmd_sftp_user(ctx: Context) -> int:
    # paramiko and argon2 are loaded only for these commands, not for every CLI start
    from gateway.sftp_accounts import (
        add_account,
        add_key,
        list_accounts,
        remove_account,
        remove_key,
        set_disabled,
        set_password,
    )
    from gateway.sftp_keys import hash_password

    args = ctx.args
    action = args.action
    now = ctx.app.clock()
    try:
        if action == "list":
            with transaction(ctx.app.engine, write=False) as conn:
                accounts = list_accounts(conn)
            rows = [
                {
                    **a,
                    "administrations": ",".join(a["administrations"]),
                    "keys": ", ".join(f"{k['type']} {k['fingerprint']}" for k in a["keys"]) or "-",
                }
                for a in accounts
            ]
            columns = [("name", "account"), ("administrations", "administrations"), ("disabled", "disabled")]
            columns += [("password", "password"), ("keys", "keys")]
            ctx.emit(accounts, table(rows, columns, flexible="keys"))
            return 0
        with transaction(ctx.app.engine) as conn:
            if action == "add":
                _check_administrations(ctx, args.administration)
                keys = read_keys(args.public_key)
                password = hash_password(read_password()) if args.password_stdin else None
                add_account(conn, args.name, args.administration, keys, password, now)
                message = f"account {args.name} added for {', '.join(args.administration)}"
            elif action == "remove":
                remove_account(conn, args.name)
                message = f"account {args.name} removed"
            elif action in ("disable", "enable"):
                set_disabled(conn, args.name, action == "disable", now)
                message = f"account {args.name} {action}d"
            elif action == "add-key":
                for key in read_keys(args.public_key):
                    add_key(conn, args.name, key, now)
                message = f"key(s) added to {args.name}"
            elif action == "remove-key":
                remove_key(conn, args.name, args.fingerprint, now)
                message = f"key {args.fingerprint} removed from {args.name}"
            else:  # set-password
                hashed = None if args.none else hash_password(read_password())
                set_password(conn, args.name, hashed, now)
                message = f"password of {args.name} {'removed' if hashed is None else 'set'}"
    except ValueError as exc:
        print(f"payt-gateway: {exc}", file=sys.stderr)
        return 1
    ctx.emit({"ok": True, "message": message}, message)
    return 0


def add_sftp_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "SFTP accounts of the embedded server: add, list, remove, disable, enable, keys and passwords"
    p = sub.add_parser("sftp-user", help=text, description=text)
    p.set_defaults(func=cmd_sftp_user)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add an account (a public key, a password, or both)")
    a.add_argument("name")
    a.add_argument("--administration", action="append", required=True, help="repeat for several")
    a.add_argument("--public-key", action="append", default=[], metavar="FILE", help="an OpenSSH .pub file")
    a.add_argument("--password-stdin", action="store_true", help="read a password from the first line of stdin")
    actions.add_parser("list", help="the accounts with their administrations and keys")
    for name, help_text in (
        ("remove", "remove an account (its upload history stays)"),
        ("disable", "refuse every login of the account"),
        ("enable", "allow the account's logins again"),
    ):
        actions.add_parser(name, help=help_text).add_argument("name")
    k = actions.add_parser("add-key", help="add a public key (rotation: add the new one, then remove the old)")
    k.add_argument("name")
    k.add_argument("--public-key", action="append", required=True, metavar="FILE")
    r = actions.add_parser("remove-key", help="remove a public key by its SHA256: fingerprint")
    r.add_argument("name")
    r.add_argument("fingerprint")
    s = actions.add_parser("set-password", help="set the password from stdin, or remove it with --none")
    s.add_argument("name")
    s.add_argument("--none", action="store_true", help="remove the password (keys only)")
