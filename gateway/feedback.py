"""Feedback files for SFTP accounts: once a run of an uploaded file ends, ``feedback/<name>.result.json``
(the run in CONTRACT.md's JSON, every error included) and a readable ``.txt`` appear in the account's
read-only ``feedback/`` folder. Files older than ``[sftp] feedback_days`` are removed.

On disk: ``data_dir/sftp/feedback/<account>/<CODE>/``. The SFTP view maps it (see ``gateway.sftp_paths``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from gateway.config import Config
from gateway.pipeline import Delivery, RunResult
from gateway.render import run_summary
from gateway.runs import get_run, run_as_dict
from gateway.sftp_accounts import match_upload
from gateway.store import transaction

log = structlog.get_logger("gateway.feedback")
RESULT_SUFFIX = ".result.json"
TEXT_SUFFIX = ".result.txt"
FINAL_STATUSES = ("performed", "rejected", "held", "duplicate", "failed", "discarded")

OUTCOME_TEXT = {
    "performed": "ACCEPTED: the file was imported.",
    "rejected": "REJECTED: nothing was imported; correct the errors below and upload the file again.",
    "held": "HELD: nothing was imported yet; an operator checks the file (see the reason).",
    "duplicate": "DUPLICATE: the same content was already delivered; nothing changed.",
    "failed": "FAILED: the gateway could not process the file; the operator has been told. The file is kept.",
    "discarded": "DISCARDED by an operator: nothing was imported.",
}


def feedback_root(config: Config) -> Path:
    return config.data_dir / "sftp" / "feedback"


def feedback_folder(config: Config, account: str, code: str) -> Path:
    return feedback_root(config) / account / code


def build_feedback_text(run: Mapping[str, Any], uploaded_name: str) -> str:
    outcome = OUTCOME_TEXT.get(run["status"], f"{run['status'].upper()}.")
    return f"{uploaded_name}: {outcome}\n\n{run_summary(run)}\n"


def _write_atomic(folder: Path, name: str, data: bytes) -> None:
    tmp = folder / f".payt-gateway-{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, folder / name)


def write_feedback(config: Config, account: str, code: str, uploaded_name: str, run: Mapping[str, Any]) -> Path:
    folder = feedback_folder(config, account, code)
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    document = {"uploaded_file": uploaded_name, **run}
    body = json.dumps(document, indent=2, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
    _write_atomic(folder, uploaded_name + RESULT_SUFFIX, body)
    _write_atomic(folder, uploaded_name + TEXT_SUFFIX, build_feedback_text(run, uploaded_name).encode("utf-8"))
    return folder / (uploaded_name + RESULT_SUFFIX)


class FeedbackWriter:
    """The hook the daemon calls after each run: an uploaded file's run gets its feedback files."""

    def __init__(self, config: Config, engine: Engine, before: Callable[[], None] = lambda: None):
        self.config = config
        self.engine = engine
        self.before = before  # the upload ledger's flush: every upload taken so far is in the database

    def __call__(self, delivery: Delivery, result: RunResult) -> None:
        if result.status not in FINAL_STATUSES:
            return
        self.before()
        with transaction(self.engine) as conn:
            row = get_run(conn, result.run_id)
            if row is None:
                return
            match = match_upload(
                conn,
                delivery.administration,
                delivery.original_name,
                result.run.get("sha256"),
                result.run_id,
                row.finished_at or row.started_at,
            )
            if match is None:
                return
            run = run_as_dict(conn, row, limit=None)
        path = write_feedback(self.config, match.account_name, delivery.administration, delivery.original_name, run)
        log.info(
            "feedback_written",
            account=match.account_name,
            administration=delivery.administration,
            file=delivery.original_name,
            run_id=result.run_id,
            outcome=result.status,
            path=str(path.relative_to(self.config.data_dir)),
        )


def expire_feedback(config: Config, max_age_seconds: float, now: float | None = None) -> int:
    """Remove feedback files older than ``max_age_seconds`` (by mtime); the number removed."""
    limit = (time.time() if now is None else now) - max_age_seconds
    removed = 0
    root = feedback_root(config)
    if not root.is_dir():
        return 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                if path.lstat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    if removed:
        log.info("feedback_expired", count=removed)
    return removed
