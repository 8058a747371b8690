"""codectxd: the codectx daemon and its indexing engine."""

__version__ = "0.1.0"
