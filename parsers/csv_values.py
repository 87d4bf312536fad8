"""Pure parsers and checks for the values in a payt-csv cell (FORMATS.md §1).

Every function takes the cell text (surrounding whitespace is ignored) and either returns the canonical
value or raises :class:`InvalidValue` with a problem code and a reason that reads after the column label
("Invoice date" + " is not a valid date ..."). The ``is_plausible_*`` checks only answer yes or no: a
failure there is a warning, never a reason to block a row.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

MIN_YEAR = 1900
MAX_YEAR = 2199
MAX_INTEGER_DIGITS = 15  # a total of 10**15 euros is garbage, and it keeps cents inside a 64-bit integer


class InvalidValue(ValueError):
    """A cell value that cannot be used; ``code`` is the problem code, ``reason`` reads after the label."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ISO 3166-1 alpha-2 (all assigned codes).
COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV
    BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES
    ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE
    IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU
    NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM
    SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE
    VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a code table is easier to check as text)
)

# ISO 4217 currency codes (without precious metals, bond units and test codes).
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN
    BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR
    SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD
    USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 (a code table is easier to check as text)
)

# ISO 639-1 language codes.
LANGUAGES = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv
    dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig
    ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh
    mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru
    rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug
    uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """.split()  # noqa: SIM905 (a code table is easier to check as text)
)

# IBAN length per country (SWIFT IBAN registry). Countries not listed get the generic 15..34 check.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# VAT identification number shapes (EU VIES formats, plus the UK, Switzerland and Norway), after
# removing spaces, dots and hyphens. Other prefixes get a generic shape check.
_VAT_SHAPES: dict[str, re.Pattern[str]] = {
    prefix: re.compile(pattern, re.ASCII)
    for prefix, pattern in {
        "AT": r"ATU\d{8}",
        "BE": r"BE[01]\d{9}",
        "BG": r"BG\d{9,10}",
        "CY": r"CY\d{8}[A-Z]",
        "CZ": r"CZ\d{8,10}",
        "DE": r"DE\d{9}",
        "DK": r"DK\d{8}",
        "EE": r"EE\d{9}",
        "EL": r"EL\d{9}",
        "ES": r"ES[A-Z0-9]\d{7}[A-Z0-9]",
        "FI": r"FI\d{8}",
        "FR": r"FR[A-HJ-NP-Z0-9]{2}\d{9}",
        "HR": r"HR\d{11}",
        "HU": r"HU\d{8}",
        "IE": r"IE\d[A-Z0-9+*]\d{5}[A-W][A-I]?",
        "IT": r"IT\d{11}",
        "LT": r"LT(?:\d{9}|\d{12})",
        "LU": r"LU\d{8}",
        "LV": r"LV\d{11}",
        "MT": r"MT\d{8}",
        "NL": r"NL\d{9}B\d{2}",
        "PL": r"PL\d{10}",
        "PT": r"PT\d{9}",
        "RO": r"RO\d{2,10}",
        "SE": r"SE\d{10}01",
        "SI": r"SI\d{8}",
        "SK": r"SK\d{10}",
        "XI": r"XI(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})",
        "GB": r"GB(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})",
        "CH": r"CHE\d{9}(?:MWST|TVA|IVA)?",
        "NO": r"NO\d{9}(?:MVA)?",
    }.items()
}
_VAT_GENERIC = re.compile(r"[A-Z]{2}[A-Z0-9]{2,13}", re.ASCII)
_VAT_NOISE = re.compile(r"[\s.\-]")

# ---------------------------------------------------------------------------------------------- amounts

# The plain form most exports write ("1234.56", "-12.5", "1234,56"): no thousands separator, at most
# two decimals, and no negative zero. The parser uses it as a fast path before the full analysis.
SIMPLE_AMOUNT = re.compile(r"(?:-(?=[\d.,]*[1-9]))?\d{1,15}(?:[.,]\d{1,2})?", re.ASCII)

# The grouped forms with two decimals ("1.234,56", "-1,234.56"); the head group has no leading zero, so
# the value is never zero (no negative zero).
_GROUPED_COMMA_DECIMAL = re.compile(r"-?[1-9]\d{0,2}(?:\.\d{3}){1,4},\d{1,2}", re.ASCII)
_GROUPED_POINT_DECIMAL = re.compile(r"-?[1-9]\d{0,2}(?:,\d{3}){1,4}\.\d{1,2}", re.ASCII)

_AMOUNT_SHAPE = re.compile(
    r"""
    (?P<sign1>[-+])?\s*
    (?:(?P<cur1>€|EUR)\s*)?
    (?P<sign2>[-+])?\s*
    (?P<number>\d[\d.,]*)
    \s*(?P<sign3>-)?\s*
    (?:(?P<cur2>€|EUR)\s*)?
    (?P<sign4>-)?
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
_GROUP_HEAD = re.compile(r"\d{1,3}", re.ASCII)
_GROUP = re.compile(r"\d{3}", re.ASCII)


def _is_grouped(integer: str, separator: str) -> bool:
    """True when ``integer`` is digits grouped by thousands with ``separator`` ("1.234.567")."""
    head, *groups = integer.split(separator)
    return (
        bool(groups)
        and _GROUP_HEAD.fullmatch(head) is not None
        and not (head.startswith("0"))
        and all(_GROUP.fullmatch(g) for g in groups)
    )


def _split_number(number: str) -> tuple[str, str]:
    """Split the digits-and-separators part of an amount into (integer digits, fraction digits)."""
    dots, commas = number.count("."), number.count(",")
    if not dots and not commas:
        return number, ""
    if dots and commas:
        decimal_mark = "." if number.rfind(".") > number.rfind(",") else ","
        grouping = "," if decimal_mark == "." else "."
        if number.count(decimal_mark) != 1:
            raise InvalidValue("invalid_amount", "is not an amount (two decimal marks)")
        integer, fraction = number.split(decimal_mark)
        if not _is_grouped(integer, grouping):
            raise InvalidValue("invalid_amount", f"is not an amount ('{grouping}' is not a thousands separator)")
        if not fraction.isdigit():
            raise InvalidValue("invalid_amount", "is not an amount (no digits after the decimal mark)")
        return integer.replace(grouping, ""), fraction
    mark = "." if dots else ","
    if number.count(mark) > 1:
        if not _is_grouped(number, mark):
            raise InvalidValue("invalid_amount", "is not an amount")
        return number.replace(mark, ""), ""
    integer, fraction = number.split(mark)
    if not fraction:
        raise InvalidValue("invalid_amount", "is not an amount (no digits after the decimal mark)")
    if len(fraction) == 3 and _is_grouped(number, mark):
        raise InvalidValue(
            "invalid_amount",
            f"is ambiguous: '{mark}' may be a thousands separator or a decimal mark; write two decimals",
        )
    return integer, fraction


def parse_amount(text: str) -> Decimal:
    """An amount as Decimal: "1234.56", "1234,56", "1.234,56", "1,234.56", "-12,50", "12,50-", "€ 12,50".

    Rejects ambiguous forms ("1.234": thousands or three decimals?) and garbage with ``invalid_amount``,
    and more than two significant decimals with ``amount_precision``. Trailing zero decimals are fine.
    """
    s = text.strip()
    if SIMPLE_AMOUNT.fullmatch(s):
        return Decimal(s.replace(",", "."))
    if _GROUPED_COMMA_DECIMAL.fullmatch(s):
        return Decimal(s.replace(".", "").replace(",", "."))
    if _GROUPED_POINT_DECIMAL.fullmatch(s):
        return Decimal(s.replace(",", ""))
    m = _AMOUNT_SHAPE.fullmatch(s.replace("\xa0", " ").replace("\u202f", " "))
    if m is None:
        raise InvalidValue("invalid_amount", "is not an amount")
    signs = [g for g in (m["sign1"], m["sign2"], m["sign3"], m["sign4"]) if g]
    if len(signs) > 1 or (m["cur1"] and m["cur2"]):
        raise InvalidValue("invalid_amount", "is not an amount")
    integer, fraction = _split_number(m["number"])
    integer = integer.lstrip("0") or "0"
    if len(integer) > MAX_INTEGER_DIGITS:
        raise InvalidValue("invalid_amount", "is too large to be an amount")
    if len(fraction) > 2:
        if fraction[2:].strip("0"):
            raise InvalidValue("amount_precision", "has more than two decimals (amounts are in cents)")
        fraction = fraction[:2]
    value = Decimal(f"{integer}.{fraction}" if fraction else integer)
    if signs == ["-"] and value:
        value = -value
    return value


# ------------------------------------------------------------------------------------------------ dates

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ]00:00(?::00(?:\.0+)?)?)?", re.ASCII)
_SEPARATED_DATE = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})", re.ASCII)
_COMPACT_DATE = re.compile(r"\d{8}", re.ASCII)
_TIME = re.compile(
    r"(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?\s*(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE | re.ASCII
)

DATE_ORDERS = ("dmy", "mdy")


def _make_date(year: int, month: int, day: int) -> date | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _day_month(first: int, second: int, year: int, order: str) -> date | None:
    return _make_date(year, second, first) if order == "dmy" else _make_date(year, first, second)


def parse_date(text: str, order: str = "dmy") -> date:
    """A date: yyyy-mm-dd, dd-mm-yyyy, dd/mm/yyyy, d-m-yyyy, dd.mm.yyyy or ddmmyyyy (also yyyymmdd).

    ``order`` ("dmy" or "mdy") says how the non-ISO forms are read; it is never guessed.
    """
    s = text.strip()
    m = _ISO_DATE.fullmatch(s)
    if m:
        result = _make_date(int(m[1]), int(m[2]), int(m[3]))
    elif m := _SEPARATED_DATE.fullmatch(s):
        first, second, year = int(m[1]), int(m[3]), int(m[4])
        result = _day_month(first, second, year, order)
        if result is None and _day_month(first, second, year, _other(order)) is not None:
            raise InvalidValue("invalid_date", f"is not a valid date when read {_order_name(order)}")
    elif _COMPACT_DATE.fullmatch(s):
        result = _day_month(int(s[0:2]), int(s[2:4]), int(s[4:8]), order)
        if result is None:  # yyyymmdd cannot be confused with ddmmyyyy inside the accepted years
            result = _make_date(int(s[0:4]), int(s[4:6]), int(s[6:8]))
    else:
        raise InvalidValue("invalid_date", "is not a date (expected yyyy-mm-dd or dd-mm-yyyy)")
    if result is None:
        raise InvalidValue("invalid_date", "is not a valid date")
    return result


def _other(order: str) -> str:
    return "mdy" if order == "dmy" else "dmy"


def _order_name(order: str) -> str:
    return "day-first (dd-mm-yyyy)" if order == "dmy" else "month-first (mm-dd-yyyy)"


def parse_date_or_datetime(text: str, order: str = "dmy") -> date | datetime:
    """A date (any :func:`parse_date` form) or a date with a time ("2026-03-01T10:15:00+01:00",
    "2026-03-01 10:15", "01-03-2026 10:15:30"). Without an offset the datetime is naive: the
    administration's time zone applies, which the importer knows and this function does not."""
    s = text.strip()
    for sep in ("T", " "):
        head, found, tail = s.partition(sep)
        if found and tail.strip():
            day = parse_date(head, order)
            return _with_time(day, tail.strip())
    return parse_date(s, order)


def _with_time(day: date, text: str) -> datetime:
    m = _TIME.fullmatch(text)
    if m is None:
        raise InvalidValue("invalid_date", "is not a valid date and time")
    hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
    micro = int((m[4] or "0").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidValue("invalid_date", "is not a valid date and time")
    tz: timezone | None = None
    if m[5]:
        offset = m[5].upper()
        if offset == "Z":
            tz = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[-2:])
            if hours > 23 or minutes > 59:
                raise InvalidValue("invalid_date", "has an invalid time zone offset")
            delta = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-delta if offset[0] == "-" else delta)
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=tz)


# ------------------------------------------------------------------------------------- other values

_BOOLEANS = {
    "1": True, "0": False, "true": True, "false": False, "yes": True, "no": False, "y": True, "n": False,
    "ja": True, "nee": False, "j": True, "waar": True, "onwaar": False,
}  # fmt: skip


def parse_bool(text: str) -> bool:
    """0/1/true/false (Payt's forms), also yes/no and ja/nee, case-insensitive."""
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise InvalidValue("invalid_bool", "must be 0, 1, true or false")
    return value


_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)"
)


def parse_email(text: str) -> str:
    """One e-mail address of a plausible shape (local@domain.tld), at most 254 characters."""
    s = text.strip()
    if len(s) > 254 or _EMAIL.fullmatch(s) is None:
        raise InvalidValue("invalid_email", "is not a valid e-mail address")
    return s


def parse_country(text: str) -> str:
    """An ISO 3166-1 alpha-2 country code, upper-cased ("nl" -> "NL")."""
    s = text.strip().upper()
    if s not in COUNTRIES:
        raise InvalidValue("invalid_country", "must be an ISO alpha-2 code")
    return s


def parse_currency(text: str) -> str:
    """An ISO 4217 currency code, upper-cased."""
    s = text.strip().upper()
    if s not in CURRENCIES:
        raise InvalidValue("invalid_currency", "must be an ISO 4217 currency code")
    return s


def parse_language(text: str) -> str:
    """An ISO 639-1 language code, lower-cased; a region suffix is dropped ("nl-NL", "nl_BE" -> "nl")."""
    s = text.strip().lower()
    primary = s[:2] if len(s) == 5 and s[2] in "-_" and s[3:].isalpha() else s
    if primary not in LANGUAGES:
        raise InvalidValue("invalid_language", "must be an ISO 639-1 language code")
    return primary


def normalise_iban(text: str) -> str:
    """The IBAN without spaces, upper-cased (the electronic form)."""
    if text.isalnum() and text.isupper():
        return text
    return "".join(text.split()).upper()


_IBAN_LETTERS = {ord(ch): str(ord(ch) - ord("A") + 10) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", re.ASCII)


def is_valid_iban(text: str) -> bool:
    """Country code, check digits, the country's length and the mod-97 check (ISO 13616)."""
    iban = normalise_iban(text)
    if _IBAN_SHAPE.fullmatch(iban) is None:
        return False
    if len(iban) != IBAN_LENGTHS.get(iban[:2], len(iban)):
        return False
    # mod 97 of the number read from BBAN + country + check digits, letters as 10..35. The letters sit
    # at the front (a bank code, the country), so only that part is translated, through a small memo.
    body = iban[4:]
    letters_end = len(body.rstrip("0123456789"))
    return int(_expand(body[:letters_end]) + body[letters_end:] + _expand(iban[:4])) % 97 == 1


_EXPANSIONS: dict[str, str] = {}


def _expand(text: str) -> str:
    expanded = _EXPANSIONS.get(text)
    if expanded is None:
        expanded = text.translate(_IBAN_LETTERS)
        if len(_EXPANSIONS) < 4096:
            _EXPANSIONS[text] = expanded
    return expanded


def is_plausible_vat_number(text: str) -> bool:
    """The shape of a VAT identification number, with its country prefix (NL123456789B01)."""
    vat = text if text.isalnum() and text.isupper() else _VAT_NOISE.sub("", text).upper()
    shape = _VAT_SHAPES.get(vat[:2] if vat[:3] != "CHE" else "CH", _VAT_GENERIC)
    return shape.fullmatch(vat) is not None


_PHONE_CHARS = re.compile(r"\+?[\d\s()./-]+", re.ASCII)
_NOT_DIGITS = re.compile(r"\D+", re.ASCII)


def is_plausible_phone(text: str) -> bool:
    """Digits with the usual punctuation, an optional leading +, and 8 to 15 digits (E.164 allows 15;
    an international prefix 00 is not counted), not all the same digit."""
    s = text.strip()
    compact = s.replace("-", "").replace(" ", "")
    if compact.isascii() and compact.isdigit() and not compact.startswith("00"):  # "030-1234567"
        return 8 <= len(compact) <= 15 and compact.count(compact[0]) != len(compact)
    if _PHONE_CHARS.fullmatch(s) is None:
        return False
    digits = _NOT_DIGITS.sub("", s)
    if digits.startswith("00"):
        digits = digits[2:]
    return 8 <= len(digits) <= 15 and digits.count(digits[0]) != len(digits)
