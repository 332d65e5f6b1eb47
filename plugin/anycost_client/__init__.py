"""Host-neutral client of the Anycost backend: wire protocol, connection and session state.

Pure Python (pyzmq + msgpack only) so it runs inside Krita's and GIMP's Python.
"""

from .protocol import PROTOCOL_VERSION, Frame, Message, ProtocolError

__all__ = ["PROTOCOL_VERSION", "Frame", "Message", "ProtocolError"]
