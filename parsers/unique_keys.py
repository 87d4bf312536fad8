"""Uniqueness of keys (XSD ``xs:unique``) checked in a stream, in bounded memory.

libxml2 keeps every key of an identity constraint until the document ends (about 380 bytes per invoice
for payt-xml), so the streaming validation uses a copy of the schema without its identity constraints
(``without_identity_constraints``) and the keys are checked here instead: each key is kept as its 64-bit
``hash()`` only, 8 bytes in one of 256 arrays. A hash seen twice names a candidate duplicate; two different
keys can share a hash, so a caller confirms a candidate by comparing the keys themselves (the second pass
of ``parsers.payt_xml_schema`` does). ``hash()`` of a string differs between processes: hashes are only
compared within the process that made them.
"""

from __future__ import annotations

import copy
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

XS = "http://www.w3.org/2001/XMLSchema"
IDENTITY_CONSTRAINTS = (f"{{{XS}}}unique", f"{{{XS}}}key", f"{{{XS}}}keyref")
BUCKETS = 256


@dataclass(frozen=True, slots=True)
class KeySpec:
    """An ``xs:unique`` whose selector names child elements and whose field is one attribute."""

    name: str
    tag: str  # the selected elements' tag in Clark notation ({namespace}Name)
    attribute: str


def without_identity_constraints(schema_root: Any) -> tuple[Any, tuple[KeySpec, ...]]:
    """A copy of an XSD document without its identity constraints, and those constraints as ``KeySpec``.

    Raises ValueError for a constraint that cannot be checked from one attribute of the selected elements
    (an ``xs:key``/``xs:keyref``, a field that is not ``@name``, a selector that is not a path of child
    steps): removing it silently would drop a rule of the schema.
    """
    root = copy.deepcopy(schema_root)
    specs: list[KeySpec] = []
    for constraint in list(root.iter(*IDENTITY_CONSTRAINTS)):
        name = constraint.get("name", "")
        if constraint.tag != IDENTITY_CONSTRAINTS[0]:
            raise ValueError(f"identity constraint {name!r}: only xs:unique is checked in the stream")
        selector = constraint.find(f"{{{XS}}}selector")
        fields = constraint.findall(f"{{{XS}}}field")
        path = selector.get("xpath", "") if selector is not None else ""
        attribute = fields[0].get("xpath", "") if len(fields) == 1 else ""
        steps = path.split("/")
        if not attribute.startswith("@") or not all(s and ":" in s and "[" not in s for s in steps):
            raise ValueError(f"identity constraint {name!r}: selector {path!r} and field {attribute!r} unsupported")
        prefix, local = steps[-1].split(":", 1)
        namespace = constraint.nsmap.get(prefix)
        if namespace is None:
            raise ValueError(f"identity constraint {name!r}: unknown prefix {prefix!r}")
        specs.append(KeySpec(name, f"{{{namespace}}}{local}", attribute[1:]))
        parent = constraint.getparent()
        if parent is not None:
            parent.remove(constraint)
    return root, tuple(specs)


class HashedKeys:
    """The hashes of a stream of keys, 8 bytes per key; ``repeated()`` is the hashes added more than once."""

    def __init__(self) -> None:
        self.buckets = [array("q") for _ in range(BUCKETS)]

    def add(self, key: str) -> None:
        h = hash(key)
        self.buckets[h & (BUCKETS - 1)].append(h)

    def repeated(self) -> set[int]:
        found: set[int] = set()
        for bucket in self.buckets:
            if len(set(bucket)) < len(bucket):
                found.update(h for h, n in Counter(bucket).items() if n > 1)
        return found
