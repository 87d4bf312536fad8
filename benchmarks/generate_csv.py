"""Seeded generator of realistic payt-csv open-items files (FORMATS.md §1) for the ingest benchmarks.

    python benchmarks/generate_csv.py --rows 1000000 --seed 1 --out /tmp/open-items.csv
    python benchmarks/generate_csv.py --rows 1000000 --seed 2 --out /tmp/reimport.csv --change-open-pct 1 --from-seed 1

One row per invoice or credit note; a debtor's rows are consecutive and repeat identical debtor data, as
exports from accounting packages do. Output is streamed (memory does not grow with --rows) and is a pure
function of the arguments: the same arguments give the same bytes.

With ``--change-open-pct P --from-seed S0`` the file is the snapshot of seed S0 (same debtors, invoices,
order and bytes) except that exactly round(rows * P / 100) open amounts are lowered, as after payments. The
rows to change and their new amounts come from a separate random stream seeded by (S0, --seed, P), so the
base rows never depend on the change options.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

HEADER = (
    "debtor_code",
    "debtor_company_name",
    "debtor_is_company",
    "debtor_firstname",
    "debtor_lastname",
    "debtor_email",
    "debtor_invoice_email",
    "debtor_phone",
    "debtor_post_street_1",
    "debtor_post_postalcode",
    "debtor_post_city",
    "debtor_post_country_code",
    "debtor_language_code",
    "debtor_vat_number",
    "debtor_coc_number",
    "debtor_iban",
    "invoice_number",
    "invoice_date",
    "invoice_due_date",
    "invoice_total_amount_inc_vat",
    "invoice_open_amount_inc_vat",
    "invoice_currency_code",
    "invoice_description",
    "invoice_payment_reference",
    "invoice_payment_condition",
)
OPEN_COLUMN = HEADER.index("invoice_open_amount_inc_vat")
DEFAULT_AS_OF = date(2026, 10, 31)  # fixed, so that a seed gives the same file on any day

# -- catalogues ---------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Jan", "Pieter", "Kees", "Henk", "Willem", "Johan", "Sander", "Daan", "Bram", "Thijs", "Ruben", "Lars",
    "Sem", "Finn", "Joost", "Maarten", "Gert-Jan", "René", "Anne", "Sanne", "Lotte", "Femke", "Eva", "Iris",
    "Marieke", "Ingrid", "Petra", "Linda", "Annemiek", "Noor", "Julia", "Fleur", "Zoë", "Renée", "Chantal",
    "Mohamed", "Fatima", "Yusuf", "Priya", "Wei",
)  # fmt: skip
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
    "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
    "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "van der Linden", "Kok", "Jacobs",
    "de Haan", "Vermeulen", "van den Heuvel", "van der Veen", "van den Broek", "de Bruijn", "de Bruin",
    "van der Heijden", "Schouten", "van Beek", "Willems", "van Vliet", "van de Ven", "Hoekstra", "Maas",
    "Verhoeven", "Koster", "van Dam", "Prins", "Blom", "Huisman", "Peeters", "Kuipers", "Van Damme",
    "Müller", "Öztürk", "El Amrani",
)  # fmt: skip
COMPANY_TRADES = (
    "Bouwbedrijf", "Installatiebedrijf", "Schildersbedrijf", "Bakkerij", "Autobedrijf", "Hoveniersbedrijf",
    "Transport", "Administratiekantoor", "Adviesbureau", "Loodgietersbedrijf", "Elektrotechniek",
    "Dakdekkersbedrijf", "Kapsalon", "Tandartspraktijk", "Fysiotherapie", "Drukkerij", "Cateringbedrijf",
    "Metaalbewerking", "Timmerbedrijf", "Groothandel",
)  # fmt: skip
COMPANY_WORDS = (
    "Noord", "Zuid", "Polder", "Delta", "Horizon", "Eendracht", "Vooruit", "Duinzicht", "Molenhoek",
    "Rijnland", "Kempen", "Waterland", "Zonnehoek", "Lindeboom", "Vijverberg", "Kroonenburg",
)  # fmt: skip
LEGAL_FORMS = (" B.V.", " B.V.", " B.V.", " V.O.F.", "", " Holding B.V.", " & Zn.", " N.V.")
STREETS = (
    "Kerkstraat", "Dorpsstraat", "Schoolstraat", "Molenweg", "Stationsweg", "Nieuwstraat", "Hoofdstraat",
    "Julianastraat", "Wilhelminastraat", "Beatrixlaan", "Marktplein", "Industrieweg", "Parallelweg",
    "Eikenlaan", "Lindelaan", "Kastanjelaan", "Prinsengracht", "Keizersgracht", "Oranjestraat",
    "Burgemeester de Withstraat", "Van Goghlaan", "Rembrandtplein", "Spoorlaan", "Havenkade", "Dijkweg",
    "Kanaalweg", "Ambachtsweg", "Handelsweg", "Noordeinde", "Zuidsingel", "Achterom", "'t Zand",
)  # fmt: skip
# (city, first two postcode digits, area code)
NL_CITIES = (
    ("Amsterdam", "10", "020"), ("Rotterdam", "30", "010"), ("Den Haag", "25", "070"),
    ("Utrecht", "35", "030"), ("Eindhoven", "56", "040"), ("Groningen", "97", "050"),
    ("Tilburg", "50", "013"), ("Almere", "13", "036"), ("Breda", "48", "076"), ("Nijmegen", "65", "024"),
    ("Apeldoorn", "73", "055"), ("Haarlem", "20", "023"), ("Arnhem", "68", "026"),
    ("Enschede", "75", "053"), ("Amersfoort", "38", "033"), ("Zwolle", "80", "038"),
    ("Leiden", "23", "071"), ("Maastricht", "62", "043"), ("Dordrecht", "33", "078"),
    ("Zoetermeer", "27", "079"), ("'s-Hertogenbosch", "52", "073"), ("Leeuwarden", "89", "058"),
    ("Delft", "26", "015"), ("Alkmaar", "18", "072"), ("Deventer", "74", "0570"), ("Hilversum", "12", "035"),
    ("Heerlen", "64", "045"), ("Venlo", "59", "077"), ("Gouda", "28", "0182"), ("Sneek", "86", "0515"),
)  # fmt: skip
# (country, city, postcode, street, phone prefix, languages)
FOREIGN_PLACES = (
    ("BE", "Antwerpen", "2000", "Meir", "+32 3 ", ("nl", "nl", "en")),
    ("BE", "Gent", "9000", "Veldstraat", "+32 9 ", ("nl",)),
    ("BE", "Brussel", "1000", "Rue Neuve", "+32 2 ", ("fr", "nl")),
    ("DE", "Düsseldorf", "40212", "Königsallee", "+49 211 ", ("de", "en")),
    ("DE", "Köln", "50667", "Hohe Straße", "+49 221 ", ("de",)),
    ("DE", "Aachen", "52062", "Pontstraße", "+49 241 ", ("de",)),
)
MAIL_PROVIDERS = ("gmail.com", "hotmail.com", "outlook.com", "ziggo.nl", "kpnmail.nl", "xs4all.nl", "live.nl")
BANKS = ("ABNA", "INGB", "INGB", "RABO", "RABO", "SNSB", "TRIO", "ASNB", "KNAB", "BUNQ", "RBRB")
POSTCODE_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
MONTHS = (
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
)  # fmt: skip
SERVICES = (
    "Onderhoudscontract", "Advieswerkzaamheden", "Huur bedrijfsruimte", "Abonnement", "Licentie software",
    "Schoonmaakwerkzaamheden", "Levering materialen", "Montage en installatie", "Reparatie", "Catering",
)  # fmt: skip
# (days, text); 30 days net is by far the most common condition
PAYMENT_TERMS = (
    (30, "30 dagen netto"), (30, "30 dagen netto"), (30, "30 dagen netto"), (30, "Betaling binnen 30 dagen"),
    (14, "14 dagen netto"), (14, "14 dagen netto"), (8, "8 dagen"), (60, "60 dagen netto"), (0, "Direct"),
)  # fmt: skip
CURRENCE_WEIGHTS = (2, 4, 8, 5, 10, 9, 7, 3, 6, 1, 2, 4, 8, 5, 10)

# -- small pure helpers -------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Lower-case ASCII letters and digits only: for e-mail addresses."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return "".join(c for c in plain if c.isalnum())


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616 check digits: 98 - (BBAN + country + '00' as digits) mod 97."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(digits) % 97:02d}"


def make_iban(country: str, bban: str) -> str:
    return f"{country}{iban_check_digits(country, bban)}{bban}"


def iban_is_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def nl_vat_number(rng: random.Random) -> str:
    """NL + 9 digits passing the eleven-test of the fiscal number + B + 2 digits."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        check = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10 and (digits[0] or check):
            return f"NL{''.join(map(str, digits))}{check}B{rng.randrange(1, 4):02d}"


def currence_reference(number15: int) -> str:
    """A 16-digit Dutch 'betalingskenmerk': a modulus-11 check digit and 15 digits."""
    body = f"{number15:015d}"
    total = sum(int(d) * w for d, w in zip(reversed(body), CURRENCE_WEIGHTS, strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else 1 if check == 10 else check
    return f"{check}{body}"


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def parse_cents(text: str) -> int:
    negative = text.startswith("-")
    whole, _, part = text.lstrip("-").partition(".")
    cents = int(whole) * 100 + int(part)
    return -cents if negative else cents


# -- debtors ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    street: str
    postcode: str
    city: str
    country: str
    phone_prefix: str
    language: str


def nl_address(rng: random.Random) -> Address:
    city, prefix, area = rng.choice(NL_CITIES)
    number = f"{rng.randint(1, 250)}{rng.choice(('', '', '', '', 'a', 'b', '-1', ' bis'))}"
    postcode = f"{prefix}{rng.randrange(100):02d} {rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}"
    language = "en" if rng.random() < 0.04 else "nl"
    return Address(f"{rng.choice(STREETS)} {number}", postcode, city, "NL", f"{area}-", language)


def foreign_address(rng: random.Random) -> Address:
    country, city, postcode, street, phone, languages = rng.choice(FOREIGN_PLACES)
    return Address(f"{street} {rng.randint(1, 120)}", postcode, city, country, phone, rng.choice(languages))


def phone_number(rng: random.Random, address: Address) -> str:
    if address.country == "NL" and rng.random() < 0.35:
        return f"06-{rng.randrange(10**7, 10**8)}"
    digits = 10 - len(address.phone_prefix.replace(" ", "").replace("-", "").replace("+", ""))
    return f"{address.phone_prefix}{rng.randrange(10 ** (digits - 1), 10**digits)}"


def bank_account(rng: random.Random, address: Address, invalid_iban_rate: float) -> str:
    roll = rng.random()
    if roll < 0.12:
        return ""  # not every export carries the account
    if address.country == "BE":
        iban = make_iban("BE", f"{rng.randrange(10**12):012d}")
    elif address.country == "DE":
        iban = make_iban("DE", f"{rng.randrange(10**18):018d}")
    else:
        iban = make_iban("NL", f"{rng.choice(BANKS)}{rng.randrange(10**10):010d}")
    if roll > 1.0 - invalid_iban_rate:  # a typo in the bookkeeping: fails mod-97
        iban = iban[:-1] + str((int(iban[-1]) + 1) % 10)
    return iban


def company_name(rng: random.Random, lastname: str) -> str:
    style = rng.random()
    if style < 0.45:
        name = f"{rng.choice(COMPANY_TRADES)} {lastname[0].upper()}{lastname[1:]}"
    elif style < 0.75:
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_TRADES)}"
    else:
        name = f"{lastname[0].upper()}{lastname[1:]} {rng.choice(COMPANY_TRADES)}"
    return name + rng.choice(LEGAL_FORMS)


def debtor_fields(rng: random.Random, code: int, invalid_iban_rate: float) -> tuple[list[str], tuple[int, str]]:
    """The 16 debtor columns of one debtor (in HEADER order) and its payment term."""
    address = nl_address(rng) if rng.random() < 0.94 else foreign_address(rng)
    firstname, lastname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    is_company = rng.random() < 0.7
    person = f"{slug(firstname)}.{slug(lastname)}"
    if is_company:
        name = company_name(rng, lastname)
        domain = f"{slug(name.removesuffix(' B.V.'))[:30]}.{address.country.lower()}"
        email = f"{rng.choice(('info', 'info', 'contact', person))}@{domain}"
        invoice_email = rng.choice((f"facturen@{domain}", f"administratie@{domain}", f"crediteuren@{domain}", ""))
        vat = nl_vat_number(rng) if address.country == "NL" and rng.random() < 0.9 else ""
        coc = f"{rng.randrange(10**7, 10**8)}" if address.country == "NL" else ""
    else:
        name, vat, coc, invoice_email = "", "", "", ""
        email = f"{person}{rng.choice(('', '', str(rng.randint(1, 99))))}@{rng.choice(MAIL_PROVIDERS)}"
    if rng.random() < 0.05:
        email = ""
    fields = [
        str(code),
        name,
        "1" if is_company else "0",
        firstname if (not is_company or rng.random() < 0.6) else "",
        lastname,
        email,
        invoice_email,
        phone_number(rng, address) if rng.random() < 0.85 else "",
        address.street,
        address.postcode,
        address.city,
        address.country,
        address.language,
        vat,
        coc,
        bank_account(rng, address, invalid_iban_rate),
    ]
    return fields, rng.choice(PAYMENT_TERMS)


# -- invoices -----------------------------------------------------------------------------------------------


class InvoiceNumbers:
    """Unique, scattered invoice numbers: an affine permutation of a counter modulo a power of ten."""

    MULTIPLIER = 3_141_593  # odd and not a multiple of 5: coprime with every power of ten
    OFFSET = 2_718_281

    def __init__(self, rows: int):
        self.width = max(7, len(str(rows)))
        self.modulus = 10**self.width
        self.counter = 0

    def next(self, year: int) -> str:
        value = (self.counter * self.MULTIPLIER + self.OFFSET) % self.modulus
        self.counter += 1
        return f"{year}-{value:0{self.width}d}"


class DateText:
    """ISO text of dates, cached: there are only a few hundred distinct ones."""

    def __init__(self) -> None:
        self.cache: dict[int, str] = {}

    def __call__(self, ordinal: int) -> str:
        text = self.cache.get(ordinal)
        if text is None:
            text = self.cache[ordinal] = date.fromordinal(ordinal).isoformat()
        return text


def amounts(rng: random.Random) -> tuple[int, int]:
    """(total, open) in cents: mostly fully open invoices, some partly paid, a few credit notes."""
    net = max(400, int(rng.lognormvariate(5.0, 1.1) * 100))
    total = net * rng.choice((121, 121, 121, 109, 100)) // 100
    roll = rng.random()
    if roll < 0.02:
        return -total, -total  # credit note, not yet settled
    if roll < 0.17:
        return total, max(50, total * rng.randint(10, 90) // 100)  # partly paid
    return total, total


def description(rng: random.Random, invoice_date: date, credit: bool) -> str:
    if credit:
        return rng.choice(("Creditnota retour", "Creditering prijsverschil", "Creditnota bij factuur"))
    month = MONTHS[invoice_date.month - 1]
    roll = rng.random()
    if roll < 0.4:
        return f"Factuur {month} {invoice_date.year}"
    if roll < 0.7:
        return f"{rng.choice(SERVICES)} {month} {invoice_date.year}"
    return f"Levering order {rng.randint(10000, 99999)}"


def invoice_rows(
    rng: random.Random,
    debtor: list[str],
    term: tuple[int, str],
    count: int,
    as_of: int,
    numbers: InvoiceNumbers,
    date_text: DateText,
) -> Iterator[list[str]]:
    """A debtor's invoices, oldest first, each a full row (debtor columns + invoice columns)."""
    ages = sorted((min(700, int(rng.expovariate(1 / 45))) for _ in range(count)), reverse=True)
    days, condition = term
    for age in ages:
        issued = as_of - age
        total, open_ = amounts(rng)
        issued_date = date.fromordinal(issued)
        yield [
            *debtor,
            numbers.next(issued_date.year),
            date_text(issued),
            date_text(issued + days),
            format_cents(total),
            format_cents(open_),
            "EUR",
            description(rng, issued_date, total < 0),
            currence_reference(rng.randrange(10**15)),
            condition,
        ]


def invoices_per_debtor(rng: random.Random) -> int:
    """About 5 on average, skewed: many debtors with one or two invoices, a few with dozens."""
    return 1 + min(200, int(rng.expovariate(1 / 4.5)))


def base_rows(rows: int, seed: int, as_of: date, invalid_iban_rate: float) -> Iterator[list[str]]:
    """Exactly ``rows`` rows, debtor by debtor, from the stream random.Random(seed)."""
    rng = random.Random(seed)
    numbers = InvoiceNumbers(rows)
    date_text = DateText()
    code = 10000
    left = rows
    while left > 0:
        code += rng.randint(1, 3)
        debtor, term = debtor_fields(rng, code, invalid_iban_rate)
        count = min(left, invoices_per_debtor(rng))
        yield from invoice_rows(rng, debtor, term, count, as_of.toordinal(), numbers, date_text)
        left -= count


# -- changes for a re-import --------------------------------------------------------------------------------


def change_count(rows: int, pct: float) -> int:
    return round(rows * pct / 100)


def lowered_open_amounts(
    rows: Iterator[list[str]], total_rows: int, pct: float, from_seed: int, seed: int
) -> Iterator[list[str]]:
    """The same rows, with exactly change_count() open amounts lowered (a partial payment, never to zero)."""
    rng = random.Random(f"payt-gateway-bench-change:{from_seed}:{seed}:{pct}")
    chosen = set(rng.sample(range(total_rows), change_count(total_rows, pct)))
    for index, row in enumerate(rows):
        if index in chosen:
            open_ = parse_cents(row[OPEN_COLUMN])
            paid = max(1, abs(open_) * rng.randint(5, 80) // 100)
            row[OPEN_COLUMN] = format_cents(open_ - paid if open_ > 0 else open_ + paid)
        yield row


# -- writing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    path: Path
    rows: int
    changed: int
    seconds: float
    size_bytes: int


def generate(
    out: Path,
    rows: int,
    seed: int,
    *,
    change_open_pct: float = 0.0,
    from_seed: int | None = None,
    as_of: date = DEFAULT_AS_OF,
    invalid_iban_rate: float = 0.002,
) -> Generated:
    """Write the file and say what was written. ``from_seed`` set: the snapshot of that seed, changed."""
    started = time.perf_counter()
    base_seed = seed if from_seed is None else from_seed
    stream = base_rows(rows, base_seed, as_of, invalid_iban_rate)
    changed = 0
    if from_seed is not None:
        changed = change_count(rows, change_open_pct)
        stream = lowered_open_amounts(stream, rows, change_open_pct, from_seed, seed)
    with out.open("w", encoding="utf-8", newline="", buffering=1 << 20) as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(stream)
    return Generated(out, rows, changed, time.perf_counter() - started, out.stat().st_size)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True, help="number of invoice rows")
    parser.add_argument("--seed", type=int, required=True, help="random seed (with --from-seed: of the changes)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    parser.add_argument("--change-open-pct", type=float, default=None, help="lower this %% of open amounts")
    parser.add_argument("--from-seed", type=int, default=None, help="the seed of the snapshot to change")
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF, help="the snapshot date")
    parser.add_argument(
        "--invalid-iban-pct", type=float, default=0.2, help="%% of debtors whose IBAN fails mod-97 (default 0.2)"
    )
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must not be negative")
    if (args.change_open_pct is None) != (args.from_seed is None):
        parser.error("--change-open-pct and --from-seed go together")
    if args.change_open_pct is not None and not 0 <= args.change_open_pct <= 100:
        parser.error("--change-open-pct must be between 0 and 100")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = generate(
        args.out,
        args.rows,
        args.seed,
        change_open_pct=args.change_open_pct or 0.0,
        from_seed=args.from_seed,
        as_of=args.as_of,
        invalid_iban_rate=args.invalid_iban_pct / 100,
    )
    print(
        f"wrote {result.rows} rows ({result.changed} open amounts changed), "
        f"{result.size_bytes / 1e6:.1f} MB to {result.path} in {result.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
