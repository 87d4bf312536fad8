"""Secrets (CONTRACT.md): never in the TOML file, never in logs.

A secret NAME of administration CODE is read from the file ``CODE_NAME`` in ``$CREDENTIALS_DIRECTORY``
(systemd ``LoadCredential=``), else from the environment variable ``PAYT_GATEWAY_CODE_NAME``. Gateway-wide
secrets (``SECRET_KEY``, ``SMTP_PASSWORD``) drop the ``CODE_`` part. In an environment variable's name,
characters of the code that a shell cannot use (``.``, ``-``) are written as ``_``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
ENV_PREFIX = "PAYT_GATEWAY_"


def secret_file_name(name: str, administration: str | None = None) -> str:
    return f"{administration}_{name}" if administration else name


def secret_env_name(name: str, administration: str | None = None) -> str:
    code = re.sub(r"[^A-Za-z0-9_]", "_", administration) + "_" if administration else ""
    return f"{ENV_PREFIX}{code}{name}"


def read_secret(name: str, administration: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret's value with surrounding whitespace (a file's final newline) removed; None when absent."""
    env = os.environ if environ is None else environ
    folder = env.get(CREDENTIALS_ENV)
    if folder:
        path = Path(folder) / secret_file_name(name, administration)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            value = ""
        if value:
            return value
    value = env.get(secret_env_name(name, administration), "").strip()
    return value or None


def describe_secret(name: str, administration: str | None = None) -> str:
    """Where an operator puts the secret (for error messages; never the value)."""
    return (
        f"put it in $CREDENTIALS_DIRECTORY/{secret_file_name(name, administration)} (systemd LoadCredential=) "
        f"or in the environment variable {secret_env_name(name, administration)}"
    )
