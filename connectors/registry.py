"""Every API source the gateway knows, by its ``source`` name in the configuration.

Adding a vendor: a module in ``connectors/`` with ``SETTINGS``, ``secrets`` and a ``VENDOR`` descriptor
(see ``connectors.moneybird``), one line here, and a fake server under ``tests/fakes/``.
"""

from __future__ import annotations

from connectors import eboekhouden, exact_online, moneybird, twinfield
from connectors.base import Vendor

VENDORS: dict[str, Vendor] = {
    v.source: v for v in (moneybird.VENDOR, exact_online.VENDOR, twinfield.VENDOR, eboekhouden.VENDOR)
}
