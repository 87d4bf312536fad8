"""How each open-items format's parser is called with an administration's settings.

Module-level functions in a light module (no SQLAlchemy): the parse worker imports them by name.
"""

from __future__ import annotations

from typing import BinaryIO

from gateway.config import Administration
from gateway.records import Snapshot
from parsers.payt_csv import CsvOptions, parse_payt_csv
from parsers.payt_xml import XmlOptions, parse_payt_xml


def csv_options(admin: Administration | None) -> CsvOptions:
    if admin is None:
        return CsvOptions(administration_code="")
    return CsvOptions(
        administration_code=admin.code,
        default_currency=admin.currency,
        default_country=admin.country,
        date_order=admin.date_order,
    )


def parse_csv(stream: BinaryIO, admin: Administration) -> Snapshot:
    return parse_payt_csv(stream, csv_options(admin))


def xml_options(admin: Administration) -> XmlOptions:
    return XmlOptions(administration_code=admin.code, default_currency=admin.currency, default_country=admin.country)


def parse_xml(stream: BinaryIO, admin: Administration) -> Snapshot:
    return parse_payt_xml(stream, xml_options(admin))
