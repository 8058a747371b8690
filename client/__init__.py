"""codectx_client: the thin client of the codectx daemon (msgspec + standard library only)."""

__version__ = "0.1.0"
