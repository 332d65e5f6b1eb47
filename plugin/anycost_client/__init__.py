"""Host-neutral client of the Anycost backend: wire protocol, connection and session state.

Pure Python (pyzmq + msgpack only) so it runs inside Krita's and GIMP's Python.
"""

from .client import BackendError, Client, Preview, Result, Session
from .connection import Connection, SessionState, Status
from .protocol import PROTOCOL_VERSION, Frame, Message, ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "BackendError",
    "Client",
    "Connection",
    "Frame",
    "Message",
    "Preview",
    "ProtocolError",
    "Result",
    "Session",
    "SessionState",
    "Status",
]
