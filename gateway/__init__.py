"""payt-gateway: the import-and-send backbone for accounts-receivable software."""

__version__ = "0.1.0"
