"""Protocols: what is measured. Each is versioned data with a content hash."""
from ovbench.protocols.registry import get_protocol, protocol_ids
from ovbench.protocols.schema import ClassInfo, Layout, Protocol

__all__ = ["ClassInfo", "Layout", "Protocol", "get_protocol", "protocol_ids"]
