"""The composition root: the one place that builds the object graph from the configuration.

Only here are concrete parsers chosen (``gateway.formats`` adapts them to an administration's settings).
Nothing creates engines, sockets or threads at import time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from connectors.base import Clock as ConnectorClock
from connectors.base import Connector, ConnectorContext
from gateway.config import Administration, Config
from gateway.formats import parse_csv, parse_xml
from gateway.imports import Imports
from gateway.instances import ProcessLease
from gateway.parse_worker import MIN_BYTES as WORKER_MIN_BYTES
from gateway.pipeline import Delivery, Observer, OpenFn, ParseFn, Pipeline, ReadDocumentFn, RunResult
from gateway.polling import ConnectorFactory, Poller
from gateway.secrets import describe_secret, read_secret
from gateway.store import make_engine, migrate
from gateway.watcher import open_claimed
from parsers.pdf import read_pdf
from parsers.ubl import read_ubl

if TYPE_CHECKING:
    from gateway.sender import Sender

Clock = Callable[[], datetime]
RunHook = Callable[[Delivery, RunResult], None]


def system_clock() -> datetime:
    return datetime.now(UTC)


def fixed_clock(moment: datetime) -> Clock:
    return lambda: moment


def running_clock(moment: datetime) -> Clock:
    """A clock that starts at ``moment`` and runs on at the real pace (``run --now``: a daemon rehearsing a
    day, whose import times, slots and waits come as they would from ``moment`` on)."""
    started = time.monotonic()
    return lambda: moment + timedelta(seconds=time.monotonic() - started)


PARSERS: dict[str, ParseFn] = {"payt-csv": parse_csv, "payt-xml": parse_xml}
DOCUMENT_READERS: dict[str, ReadDocumentFn] = {"pdf": read_pdf, "ubl": read_ubl}


class GatewayClock:
    """The connectors' clock over the gateway's: ``now`` from it (a fixed ``--now`` stays fixed), real sleep."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def connector_factory(config: Config, engine: Engine, clock: ConnectorClock) -> ConnectorFactory:
    """Builds an administration's connector: its vendor module, settings, secrets and token store."""

    def build(admin: Administration) -> Connector:
        from connectors.registry import VENDORS  # see make_sender
        from gateway.tokens import DbTokenStore

        vendor = VENDORS[admin.source]
        ctx = ConnectorContext(
            administration=admin.code,
            settings=admin.connector,
            secret=lambda name: read_secret(name, admin.code),
            tokens=DbTokenStore(engine, admin.code, admin.name, admin.source, clock),
            clock=clock,
            secret_help=lambda name: describe_secret(name, admin.code),
        )
        return vendor.build(ctx)

    return build


@dataclass
class App:
    config: Config
    engine: Engine
    pipeline: Pipeline
    clock: Clock
    connectors: ConnectorFactory
    imports: Imports
    lease: ProcessLease  # this process's claim on the shared data folder (gateway.instances), taken on first use
    run_hooks: list[RunHook] = field(default_factory=list)  # called by the daemon after each processed file
    open_file: OpenFn = open_claimed  # how the pipeline opens a claimed file (the daemon counts reads as progress)
    observers: list[Observer] = field(default_factory=list)  # called by the pipeline for every processed file
    worker_min_bytes: int | None = None  # files from this size are parsed in a worker process (SQLite only)

    def apply_config(self, config: Config) -> None:
        """A reloaded configuration: the pipeline, imports and poller are rebuilt around the same engine.

        Only the thread that runs the pipeline may call this (the daemon's worker, between files)."""
        self.config = config
        self.pipeline, self.imports = _wire(
            config, self.engine, self.clock, self.connectors, self.open_file, self.worker_min_bytes, self.lease.token
        )
        self.pipeline.observers = self.observers

    def make_sender(self, stopping: threading.Event | None = None) -> Sender:
        """The sender with the configured transport (outbox folder or SMTP); one per daemon or command."""
        # Imported here, as the connectors above: a command that only imports (ingest) does without the
        # sender's templates and calendars and the vendors' HTTP and crypto (~15 MB, ~0.15 s of its start).
        from gateway.sender import Sender
        from gateway.transports import make_transport

        cfg = self.config
        return Sender(cfg, self.engine, lambda: make_transport(cfg.sender, cfg.outbox_dir), self.clock, stopping)


def _wire(
    config: Config,
    engine: Engine,
    clock: Clock,
    connectors: ConnectorFactory,
    open_file: OpenFn,
    worker_min_bytes: int | None,
    owner: Callable[[], str],
) -> tuple[Pipeline, Imports]:
    pipeline = Pipeline(config, engine, PARSERS, open_file, clock, DOCUMENT_READERS, owner, worker_min_bytes)
    imports = Imports(config, engine, pipeline, Poller(config, engine, pipeline, clock, connectors), clock)
    return pipeline, imports


def build_app(
    config: Config,
    clock: Clock = system_clock,
    run_migrations: bool = True,
    connector_clock: ConnectorClock | None = None,
) -> App:
    engine = make_engine(config.database_url)
    if run_migrations:
        migrate(engine)
    # Large files are parsed in a worker process on SQLite only: with PostgreSQL the database server needs the
    # second core (one 1M-row measurement on a busy machine: the same CPU in the gateway, 15-35 % longer imports).
    worker_min_bytes = WORKER_MIN_BYTES if engine.dialect.name == "sqlite" else None
    lease = ProcessLease(config.data_dir)
    connectors = connector_factory(config, engine, connector_clock or GatewayClock(clock))
    pipeline, imports = _wire(config, engine, clock, connectors, open_claimed, worker_min_bytes, lease.token)
    app = App(config, engine, pipeline, clock, connectors, imports, lease, worker_min_bytes=worker_min_bytes)
    pipeline.observers = app.observers
    return app
