"""The payt-csv column spec, kept as data in ``schemas/payt-csv.columns.json``, and header matching.

Adding an alias (or a column whose record field already exists) is an edit of that JSON file only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from gateway.records import Debtor, Invoice

SPEC_RESOURCE = "payt-csv.columns.json"

TYPES = frozenset(
    {
        "text",
        "bool",
        "email",
        "phone",
        "date",
        "date_or_datetime",
        "decimal",
        "country",
        "currency",
        "language",
        "iban",
        "vat_number",
    }
)
RECORD_FIELDS: dict[str, frozenset[str]] = {
    "debtor": frozenset(f.name for f in dataclasses.fields(Debtor)),
    "invoice": frozenset(f.name for f in dataclasses.fields(Invoice)),
}
DEFAULT_SOURCES = frozenset({"default_country", "default_currency"})

_SEPARATORS = re.compile(r"[\s.\-_]+")


def normalise_header(name: str) -> str:
    """Header cell -> lookup key: trimmed, lower case, runs of spaces/dots/hyphens/underscores -> '_'."""
    return _SEPARATORS.sub("_", name.replace("\ufeff", "").strip().lower()).strip("_")


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    name: str
    label: str
    names: tuple[str, ...]  # the canonical name first, then the aliases, as written in the spec
    type: str
    required: bool
    max_length: int
    record: str | None
    field: str | None
    default_from: str | None

    def accepted_names(self) -> str:
        return ", ".join(self.names)


@dataclass(frozen=True, slots=True)
class OneOf:
    columns: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class CsvSpec:
    columns: tuple[ColumnSpec, ...]
    by_name: Mapping[str, ColumnSpec]
    lookup: Mapping[str, str]  # normalised header name -> canonical column name
    required_one_of: tuple[OneOf, ...]

    def match(self, header: str) -> str | None:
        """The canonical column a header cell names, or None for an unknown column."""
        return self.lookup.get(normalise_header(header))

    def record_columns(self, record: str) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.record == record)


class SpecError(ValueError):
    """The column spec itself is inconsistent (a packaging or editing mistake, not a delivery problem)."""


def build_spec(document: Mapping[str, Any]) -> CsvSpec:
    """Validate a spec document (the parsed JSON) and index it."""
    columns: list[ColumnSpec] = []
    lookup: dict[str, str] = {}
    for raw in document["columns"]:
        aliases = raw.get("aliases", {})
        names = (raw["name"], *(a for lang in ("nl", "en") for a in aliases.get(lang, ())))
        col = ColumnSpec(
            name=raw["name"],
            label=raw.get("label") or raw["name"],
            names=tuple(dict.fromkeys(names)),
            type=raw["type"],
            required=bool(raw["required"]),
            max_length=int(raw.get("max_length", 255)),
            record=raw.get("record"),
            field=raw.get("field"),
            default_from=raw.get("default_from"),
        )
        if col.type not in TYPES:
            raise SpecError(f"column {col.name}: unknown type {col.type!r}")
        if (col.record is None) != (col.field is None) or (
            col.record is not None and col.field not in RECORD_FIELDS.get(col.record, ())
        ):
            raise SpecError(f"column {col.name}: {col.record}.{col.field} is not a canonical record field")
        if col.default_from is not None and col.default_from not in DEFAULT_SOURCES:
            raise SpecError(f"column {col.name}: unknown default_from {col.default_from!r}")
        for name in col.names:
            key = normalise_header(name)
            if lookup.setdefault(key, col.name) != col.name:
                raise SpecError(f"header name {name!r} maps to both {lookup[key]} and {col.name}")
        columns.append(col)
    by_name = {c.name: c for c in columns}
    if len(by_name) != len(columns):
        raise SpecError("a column name appears twice")
    one_of = tuple(OneOf(tuple(group["columns"]), group["message"]) for group in document.get("required_one_of", ()))
    for group in one_of:
        unknown = [c for c in group.columns if c not in by_name]
        if unknown:
            raise SpecError(f"required_one_of names unknown columns {unknown}")
    return CsvSpec(tuple(columns), by_name, lookup, one_of)


@functools.cache
def load_spec(resource: str = SPEC_RESOURCE) -> CsvSpec:
    """The spec shipped in the ``schemas`` package (read once per process)."""
    text = files("schemas").joinpath(resource).read_text(encoding="utf-8")
    return build_spec(json.loads(text))
