"""After an applied poll: the PDFs of open invoices that have none yet, downloaded from the vendor and handed
to the pipeline exactly as a delivered PDF (checked, archived, stored, linked: ``Pipeline.process``).

Which invoices: open ones of the administration without a PDF document whose vendor record named one
(``Invoice.pdf_url``), the most recently loaded first (they are the next to be sent), at most
``documents_per_poll`` per poll. Each download is written to a work folder (cleared at start-up), then renamed
into the claimed folder under the name ``<vendor>/<invoice>.pdf`` (so a crash after that processes it like any
claimed file), and processed with the poll's trigger, the vendor as its source and the invoice it belongs to.
A download that fails, or a file the PDF check refuses, is a **warning on the poll's run**, never a failed
import; the invoice still has no PDF, so the next poll tries again. What a vendor cannot give (Twinfield, an
Exact invoice without a document) is never asked for.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from connectors.base import Connector, ConnectorError
from gateway.archive import fsync_dir
from gateway.config import Administration, Config
from gateway.errors import TransientError
from gateway.intake import make_claimed_name
from gateway.pipeline import Delivery, Pipeline
from gateway.records import Entry, Problem, notice, warning
from gateway.store import transaction
from gateway.tables import documents, invoices
from gateway.unpack import work_folder

log = structlog.get_logger("gateway.document_fetch")


def pdf_urls(entries: Iterable[Entry]) -> dict[str, str]:
    """Invoice number → the vendor's PDF reference, for the entries that have one."""
    return {e.invoice.number: e.invoice.pdf_url for e in entries if e.invoice.pdf_url}


def invoices_without_pdf(engine: Engine, administration_id: int, urls: Mapping[str, str], limit: int) -> list[str]:
    """Open invoices without a PDF document that the vendor has one for, most recently loaded first."""
    i, d = invoices, documents
    has_pdf = sa.exists().where(d.c.invoice_id == i.c.id, d.c.kind == "pdf")
    query = (
        sa.select(i.c.number)
        .where(i.c.administration_id == administration_id, i.c.status == "open", ~has_pdf)
        .order_by(i.c.loaded_at.desc(), i.c.id.desc())
    )
    wanted: list[str] = []
    with transaction(engine, write=False) as conn:
        for (number,) in conn.execute(query):
            if number in urls:
                wanted.append(number)
                if len(wanted) > limit:  # one more than the limit: to say that more are waiting
                    break
    return wanted


class DocumentFetcher:
    def __init__(self, config: Config, engine: Engine, pipeline: Pipeline, clock: Callable[[], datetime]):
        self.config = config
        self.engine = engine
        self.pipeline = pipeline
        self.clock = clock

    def fetch(
        self,
        admin: Administration,
        administration_id: int,
        connector: Connector,
        urls: Mapping[str, str],
        run_id: int,
        trigger: str,
    ) -> list[Problem]:
        """Download and process the wanted PDFs; the problems for the poll's run (warnings and a summary)."""
        limit = int(admin.connector.get("documents_per_poll") or 0)
        if limit <= 0 or not urls:
            return []
        wanted = invoices_without_pdf(self.engine, administration_id, urls, limit)
        waiting = len(wanted) - limit
        problems: list[Problem] = []
        linked = 0
        workdir = work_folder(self.config.data_dir, run_id)
        try:
            for number in wanted[:limit]:
                problem = self._fetch_one(admin, connector, number, urls[number], workdir, trigger)
                if problem is None:
                    linked += 1
                else:
                    problems.append(problem)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if linked:
            problems.append(notice("documents_downloaded", f"{linked} invoice PDF(s) downloaded and linked"))
        if waiting > 0:
            problems.append(
                notice(
                    "documents_waiting",
                    f"more open invoices have a PDF to download than documents_per_poll ({limit}); "
                    "the next poll continues",
                )
            )
        return problems

    def _fetch_one(
        self, admin: Administration, connector: Connector, number: str, url: str, workdir: Path, trigger: str
    ) -> Problem | None:
        """One PDF through the pipeline; None when it was stored and linked, else the warning that says why not."""
        again = "the next poll tries again"
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = workdir / f"{secrets.token_hex(4)}.pdf.part"
        try:
            with open(partial, "wb") as sink:
                connector.fetch_pdf(url, sink)
                sink.flush()
                os.fsync(sink.fileno())
        except (ConnectorError, OSError) as exc:
            partial.unlink(missing_ok=True)
            log.warning("document_download_failed", administration=admin.code, invoice=number, reason=str(exc))
            return warning(
                "document_download_failed", f"the PDF of invoice {number} could not be downloaded: {exc}; {again}"
            )
        name = f"{admin.source}/{number}.pdf"
        folder = self.config.claimed_dir / admin.code
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = folder / make_claimed_name(self.clock(), secrets.token_hex(4), name)
        os.rename(partial, target)
        fsync_dir(folder)
        delivery = Delivery(admin.code, name, target, trigger, source=admin.source, invoice_number=number)
        try:
            result = self.pipeline.process(delivery)
        except TransientError as exc:  # the file stays claimed: processed again when the database is back
            return warning("document_deferred", f"the PDF of invoice {number} was not stored yet: {exc}; {again}")
        if any(n["code"] == "document_linked" for n in result.run.get("notices", [])):
            return None
        found = [*result.run.get("errors", []), *result.run.get("warnings", []), *result.run.get("notices", [])]
        reason = result.run.get("reason") or "; ".join(p["message"] for p in found) or "not linked"
        return warning(
            "document_not_stored",
            f"the PDF of invoice {number} from the vendor was {result.status} (run {result.run_id}): {reason}; {again}",
        )
