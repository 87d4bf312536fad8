"""Logging: structlog, JSON lines when not on a TTY (journald keeps them), readable on a TTY.

The stdlib loggers of our libraries (paramiko, sqlalchemy, httpx, watchdog, alembic) go through the
same processors, so every line has the same shape.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

QUIET = {
    "watchdog": logging.WARNING,
    "alembic": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "paramiko": logging.WARNING,
    "httpx": logging.WARNING,
}


def configure_logging(stream: TextIO | None = None, json: bool | None = None, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging to ``stream`` (default stdout). Idempotent."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name, quiet_level in QUIET.items():
        logging.getLogger(name).setLevel(quiet_level)
