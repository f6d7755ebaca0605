"""Sans-I/O request builders and response parsers, one module per API kind.

Each adapter turns a scenario into a :class:`PreparedRequest` once, up front
(the hot path only sends bytes), and parses what came back into plain data.
"""

from loadkit.protocols.registry import prepare

__all__ = ["prepare"]
