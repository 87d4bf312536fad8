"""A fake Moneybird API v2 built from SPEC.md §3.8 (the fake-server checklist).

Bearer tokens (a personal token, or OAuth tokens with rotation); ``.json`` routes; ``filter`` with ``|``
states and the **default period ``this_year``**; ``page``/``per_page`` (at most 100, more is refused) with
a ``Link`` header and short last pages; ``/synchronization`` GET and POST; ``download_pdf`` answering 302 to
a short-lived link on the file host (it refuses a request carrying an ``Authorization`` header, as signed
storage URLs do, and one that comes after the link expired; ``pdf_outage`` invoice numbers answer 503 there,
``pdf_bodies`` replaces an invoice's file);
429 after ``rate_limit`` requests in 5 minutes with ``Retry-After`` as an epoch timestamp (or seconds, or
an nginx HTML body) and ``RateLimit-*`` headers; string ids and string decimals; JSON error bodies.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from tests.fakes.base import FakeClock, FakeServer, RealClock, Request, Response, json_response, outage_response
from tests.test_pdf import make_pdf

INVALID_TOKEN = {"error": "token is invalid", "symbolic": {"request": "invalid_grant"}}
NGINX_429 = b"<html><head><title>429 Too Many Requests</title></head><body><center><h1>429 Too Many Requests</h1></center><hr><center>nginx</center></body></html>"  # noqa: E501


class FakeMoneybird(FakeServer):
    def __init__(self, clock: FakeClock | RealClock | None = None, administration_id: str = "123456789"):
        super().__init__(clock)
        self.administration_id = administration_id
        self.administration_name = "Fake B.V."
        self.personal_tokens = {"personal-token"}
        self.clients = {"mb-client": "mb-secret"}
        self.codes: dict[str, str] = {}  # code → redirect_uri
        self.access_tokens: dict[str, datetime | None] = {}  # token → expiry
        self.refresh_tokens: set[str] = set()
        self.token_lifetime: int | None = 3600  # None: no expires_in (tokens do not expire)
        self.rate_limit: int | None = 150  # requests per 5 minutes; None: off
        self.retry_after_style = "epoch"  # epoch | seconds
        self.html_429 = False
        self.default_per_page = 50
        self.link_header = True
        self.contacts: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(426664240553657596, 1013)
        self._window: list[datetime] = []
        self.pdf_link_seconds = 30
        self.pdf_outage: set[str] = set()  # invoice numbers whose file host answers 503
        self.pdf_bodies: dict[str, bytes] = {}  # invoice number → the file served instead of its PDF

    # -- data -----------------------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(next(self._ids))

    def add_contact(self, customer_id: str, company_name: str = "", **fields: Any) -> str:
        contact_id = self.new_id()
        contact = {
            "id": contact_id,
            "administration_id": self.administration_id,
            "company_name": company_name,
            "firstname": "",
            "lastname": "",
            "attention": "",
            "address1": "Hoofdstraat 12",
            "address2": "",
            "zipcode": "1234AB",
            "city": "Amsterdam",
            "country": "NL",
            "phone": "",
            "email": f"info@{customer_id}.example.nl",
            "customer_id": customer_id,
            "send_invoices_to_email": "",
            "sepa_iban": "",
            "bank_account": "",
            "tax_number": "",
            "chamber_of_commerce": "",
            "version": 1566811327,
        }
        contact.update(fields)
        self.contacts[contact_id] = contact
        return contact_id

    def add_invoice(
        self,
        contact_id: str,
        invoice_id: str,
        total: str,
        unpaid: str | None = None,
        invoice_date: date | None = None,
        due_days: int = 30,
        state: str = "open",
        **fields: Any,
    ) -> str:
        day = invoice_date or self.clock.now().date() - timedelta(days=10)
        record_id = self.new_id()
        unpaid = total if unpaid is None else unpaid
        self.invoices[record_id] = {
            "id": record_id,
            "administration_id": self.administration_id,
            "contact_id": contact_id,
            "invoice_id": invoice_id,
            "state": state,
            "invoice_date": day.isoformat(),
            "due_date": (day + timedelta(days=due_days)).isoformat(),
            "reference": f"Project {invoice_id}",
            "payment_reference": f"RF18{invoice_id.replace('-', '')}",
            "language": "nl",
            "currency": "EUR",
            "sent_at": day.isoformat(),
            "paid_at": None,
            "total_price_incl_tax": total,
            "total_price_incl_tax_base": total,
            "total_unpaid": unpaid,
            "total_unpaid_base": unpaid,
            "total_paid": str(Decimal(total) - Decimal(unpaid)),
            "version": 1711958400,
            "url": f"https://moneybird.com/{self.administration_id}/sales_invoices/{record_id}",
            **fields,
        }
        return record_id

    def pay(self, record_id: str, amount: str | None = None) -> None:
        """A payment: the whole open amount (state ``paid``) or part of it."""
        inv = self.invoices[record_id]
        unpaid = Decimal(inv["total_unpaid"]) - (Decimal(amount) if amount else Decimal(inv["total_unpaid"]))
        inv["total_unpaid"] = inv["total_unpaid_base"] = str(unpaid)
        inv["total_paid"] = str(Decimal(inv["total_price_incl_tax"]) - unpaid)
        if unpaid == 0:
            inv["state"], inv["paid_at"] = "paid", self.clock.now().date().isoformat()

    # -- dispatch -------------------------------------------------------------------------------------

    def is_data(self, request: Request) -> bool:
        return request.path.startswith("/api/")

    def route(self, request: Request) -> Response:
        path = request.path
        if path == "/oauth/authorize":
            return self._authorize(request)
        if path == "/oauth/token" and request.method == "POST":
            return self._token(request)
        if path.startswith("/pdf/"):
            return self._pdf_file(request)
        if not path.startswith("/api/v2/"):
            return json_response({"error": "record not found"}, 404)
        if not self._authorised(request):
            return json_response(INVALID_TOKEN, 401)
        limited = self._rate_limit()
        if limited is not None:
            return limited
        rest = path[len("/api/v2/") :]
        if rest == "administrations.json":
            return json_response([{"id": self.administration_id, "name": self.administration_name}])
        adm, _, resource = rest.partition("/")
        if adm != self.administration_id:
            return json_response({"error": "record not found"}, 404)
        resource = re.sub(r"\.json$", "", resource)
        if resource == "sales_invoices":
            return self._list(request, self._filtered_invoices(request), self._full)
        if resource == "contacts":
            return self._list(request, list(self.contacts.values()), copy.deepcopy)
        if resource == "sales_invoices/synchronization":
            return self._synchronization(request)
        match = re.fullmatch(r"sales_invoices/(\d+)/download_pdf", resource)
        if match and match.group(1) in self.invoices:
            expires = int(self.clock.now().timestamp()) + self.pdf_link_seconds
            return Response(302, b"", {"Location": f"{self.base_url}/pdf/{match.group(1)}?expires={expires}"})
        match = re.fullmatch(r"(sales_invoices|contacts)/(\d+)", resource)
        if match:
            table = self.invoices if match.group(1) == "sales_invoices" else self.contacts
            found = table.get(match.group(2))
            if found is not None:
                return json_response(self._full(found) if table is self.invoices else found)
        return json_response({"error": "record not found"}, 404)

    def _pdf_file(self, request: Request) -> Response:
        inv = self.invoices.get(request.path[len("/pdf/") :])
        if inv is None:
            return Response(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
        if "authorization" in request.headers:
            body = b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>"
            return Response(400, body, {"Content-Type": "application/xml"})
        if self.clock.now().timestamp() > int(request.param("expires") or 0):
            return Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        if inv["invoice_id"] in self.pdf_outage:
            return outage_response()
        body = self.pdf_bodies.get(inv["invoice_id"]) or make_pdf(f"Factuur {inv['invoice_id']}")
        return Response(200, body, {"Content-Type": "application/pdf"})

    # -- auth -----------------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :]
        if token in self.personal_tokens:
            return True
        if token not in self.access_tokens:
            return False
        expiry = self.access_tokens[token]
        return expiry is None or self.clock.now() < expiry

    def _authorize(self, request: Request) -> Response:
        """Consent is given at once: 302 back to the redirect URI with a code (the test plays the browser)."""
        if request.param("client_id") not in self.clients or request.param("response_type") != "code":
            return json_response({"error": "invalid_client"}, 400)
        code = secrets.token_hex(16)
        redirect = request.param("redirect_uri") or ""
        self.codes[code] = redirect
        query = urlencode({"code": code, "state": request.param("state") or ""})
        return Response(302, b"", {"Location": f"{redirect}?{query}"})

    def _token(self, request: Request) -> Response:
        form = request.form()
        if self.clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return json_response({"error": "invalid_client"}, 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if self.codes.pop(form.get("code", ""), None) != form.get("redirect_uri"):
                return json_response({"error": "invalid_grant"}, 400)
        elif grant == "refresh_token":
            old = form.get("refresh_token", "")
            if old not in self.refresh_tokens:
                return json_response({"error": "invalid_grant"}, 400)
            self.refresh_tokens.discard(old)  # rotation: the old refresh token is refused from now on
        else:
            return json_response({"error": "unsupported_grant_type"}, 400)
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        lifetime = self.token_lifetime
        self.access_tokens[access] = self.clock.now() + timedelta(seconds=lifetime) if lifetime else None
        self.refresh_tokens.add(refresh)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": refresh,
            "scope": "sales_invoices settings",
            "created_at": int(self.clock.now().timestamp()),
        }
        if lifetime:
            body["expires_in"] = lifetime
        return json_response(body)

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    # -- rate limit -----------------------------------------------------------------------------------

    def _rate_limit(self) -> Response | None:
        if self.rate_limit is None:
            return None
        now = self.clock.now()
        self._window = [t for t in self._window if t > now - timedelta(minutes=5)]
        reset = (self._window[0] if self._window else now) + timedelta(minutes=5)
        headers = {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(max(0, self.rate_limit - len(self._window) - 1)),
            "RateLimit-Reset": str(int(reset.timestamp())),
        }
        if len(self._window) >= self.rate_limit:
            wait = int((reset - now).total_seconds()) + 1
            after = str(int(reset.timestamp()) + 1) if self.retry_after_style == "epoch" else str(wait)
            headers["Retry-After"] = after
            headers["RateLimit-Remaining"] = "0"
            if self.html_429:
                return Response(429, NGINX_429, {"Content-Type": "text/html", **headers})
            return json_response({"error": "Too many requests"}, 429, headers)
        self._window.append(now)
        return None

    # -- resources ------------------------------------------------------------------------------------

    def _filtered_invoices(self, request: Request) -> list[dict[str, Any]]:
        states: set[str] | None = None
        start, end = self._period("this_year")
        for part in (request.param("filter") or "").split(","):
            key, _, value = part.partition(":")
            if key == "state" and value != "all":
                states = set(value.split("|"))
            elif key == "period":
                start, end = self._period(value)
        out = []
        for inv in self.invoices.values():
            day = date.fromisoformat(inv["invoice_date"])
            if start <= day <= end and (states is None or self._state(inv) in states):
                out.append(inv)
        return out

    def _state(self, inv: dict[str, Any]) -> str:
        if inv["state"] == "open" and date.fromisoformat(inv["due_date"]) < self.clock.now().date():
            return "late"
        return str(inv["state"])

    def _period(self, value: str) -> tuple[date, date]:
        today = self.clock.now().date()
        if value == "this_year":
            return date(today.year, 1, 1), date(today.year, 12, 31)
        if value == "prev_year":
            return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
        match = re.fullmatch(r"(\d{8})\.\.(\d{8})", value)
        if match:
            a, b = (datetime.strptime(x, "%Y%m%d").date() for x in match.groups())
            return a, b
        match = re.fullmatch(r"(\d{6})\.\.(\d{6})", value)
        if match:
            a = datetime.strptime(match.group(1), "%Y%m").date()
            b = datetime.strptime(match.group(2), "%Y%m").date().replace(day=28) + timedelta(days=4)
            return a, b - timedelta(days=b.day)
        return date(today.year, 1, 1), date(today.year, 12, 31)

    def _full(self, inv: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(inv)
        out["state"] = self._state(inv)
        out["contact"] = copy.deepcopy(self.contacts.get(inv["contact_id"]))
        out["details"] = [{"description": "Consulting", "price": inv["total_price_incl_tax"], "amount": "1 x"}]
        out["payments"] = []
        return out

    def _list(self, request: Request, items: list[dict[str, Any]], render: Callable[[Any], Any]) -> Response:
        try:
            page = int(request.param("page") or 1)
            per_page = int(request.param("per_page") or self.default_per_page)
        except ValueError:
            return json_response({"error": "page and per_page must be numbers"}, 400)
        if per_page > 100 or per_page < 1 or page < 1:
            return json_response({"error": "per_page must be between 1 and 100"}, 400)
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if self.link_header and page * per_page < len(items):
            query = {k: v[0] for k, v in request.query.items()}
            query["page"] = str(page + 1)
            headers["Link"] = f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="next"'
        return json_response([render(item) for item in chunk], headers=headers)

    def _synchronization(self, request: Request) -> Response:
        if request.method == "POST":
            ids = (request.json() or {}).get("ids", [])
            return json_response([self._full(self.invoices[i]) for i in ids if i in self.invoices])
        return json_response([{"id": i["id"], "version": i["version"]} for i in self._filtered_invoices(request)])
