"""Human output of the operator commands: aligned tables that stay readable at 80 columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 80


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("\n", " ")


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    width: int = WIDTH,
    flexible: str | None = None,
) -> str:
    """Render ``rows`` under ``columns`` (key, title). The ``flexible`` column is shortened to fit ``width``."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    keys = [key for key, _ in columns]
    if flexible in keys:
        i = keys.index(flexible)
        other = sum(w for j, w in enumerate(widths) if j != i) + 2 * (len(widths) - 1)
        widths[i] = max(len(columns[i][1]), min(widths[i], width - other))
    lines = ["  ".join(title.ljust(widths[i]) for i, (_, title) in enumerate(columns)).rstrip()]
    for c in cells:
        lines.append("  ".join(_fit(c[i], widths[i]) for i in range(len(columns))).rstrip())
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: max(width - 1, 0)] + "…"


def problems_block(problems: Sequence[Mapping[str, Any]], title: str) -> str:
    if not problems:
        return ""
    rows = [{"where": "file" if p["row"] is None else p["row"], **p} for p in problems]
    body = table(
        rows, [("where", "line"), ("column", "column"), ("code", "code"), ("message", "message")], flexible="message"
    )
    return f"{title} ({len(problems)}):\n{body}"


def run_summary(run: Mapping[str, Any]) -> str:
    c = run["counts"]
    lines = [
        f"run {run['run_id']}  {run['administration']}  {run['status']}  {run.get('file') or ''}".rstrip(),
        f"  rows {c['rows']}  debtors +{c['debtors_created']} ~{c['debtors_updated']}  invoices "
        f"+{c['invoices_created']} ~{c['invoices_updated']} closed {c['invoices_closed']}  "
        f"errors {c['errors']}  warnings {c['warnings']}",
    ]
    if run.get("reason"):
        lines.append(f"  reason: {run['reason']}")
    if run.get("archived_path"):
        lines.append(f"  archived: {run['archived_path']}")
    text = "\n".join(lines)
    for title, key in (("errors", "errors"), ("warnings", "warnings")):
        block = problems_block(run.get(key) or [], title)
        if block:
            text += "\n" + block
    return text
