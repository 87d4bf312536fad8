"""Secrets (CONTRACT.md): NAME of administration CODE is the file ``CODE_NAME`` in ``$CREDENTIALS_DIRECTORY``
(systemd ``LoadCredential=``), else the environment variable ``PAYT_GATEWAY_CODE_NAME``. Never the config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def credential_name(code: str | None, name: str) -> str:
    return f"{code}_{name}" if code else name


def read_credential(code: str | None, name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret, or None when it is configured nowhere. A gateway-wide secret has ``code`` None."""
    env = os.environ if environ is None else environ
    full = credential_name(code, name)
    folder = env.get("CREDENTIALS_DIRECTORY")
    if folder:
        path = Path(folder) / full
        if path.is_file():
            return path.read_text("utf-8")
    return env.get(f"PAYT_GATEWAY_{full}")
