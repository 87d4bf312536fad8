"""Builders of real archives for the tests: good ones, hostile ones and broken ones."""

from __future__ import annotations

import gzip
import io
import stat
import zipfile
from collections.abc import Iterable

MiB = 1024**2
HEADER = (
    "debtor_code;debtor_company_name;debtor_post_street_1;debtor_post_postalcode;debtor_post_city;"
    "invoice_number;invoice_date;invoice_due_date;invoice_total_amount_inc_vat;invoice_open_amount_inc_vat\n"
)


def open_items(*numbers: str, open_amount: str = "10.00") -> bytes:
    rows = "".join(
        f"D{n};Debtor {n};Straat 1;1234 AB;Utrecht;{n};2026-02-01;2026-03-01;10.00;{open_amount}\n" for n in numbers
    )
    return (HEADER + rows).encode("utf-8")


def make_zip(members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode is in the high 16 bits
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def zip_bomb(size: int = 10 * MiB) -> bytes:
    """One member of ``size`` zero bytes: ~1000:1, honestly declared in its header."""
    return make_zip([("bomb.csv", b"\0" * size)])


def lying_zip(real: int = 10 * MiB, declared: int = 900_000) -> bytes:
    """A member whose headers (local and central) declare ``declared`` bytes while it inflates to ``real``."""
    data = bytearray(make_zip([("big.csv", b"\0" * real)]))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature)
        data[at + offset : at + offset + 4] = declared.to_bytes(4, "little")
    return bytes(data)


def gzip_bomb(mebibytes: int = 64) -> bytes:
    """Concatenated gzip members of 1 MiB of zeros each (a valid multi-member gzip): ~1000:1."""
    one = gzip.compress(b"\0" * MiB, compresslevel=9)
    return one * mebibytes


def many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"{i}.pdf", b"")
    return buffer.getvalue()
