"""codectx_client: the thin client of the codectx daemon. `protocol` (the typed contract) uses
msgspec; the command-line client and its connection use the standard library only (`wire`)."""

__version__ = "0.1.0"
