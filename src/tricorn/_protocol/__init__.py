"""Sans-IO protocol state machines: bytes in -> events out, commands in -> bytes out.

HTTP/3 (:mod:`.http3`, :mod:`.quic_endpoint`) needs aioquic, an optional
extra: its names are imported on first use (see ``__getattr__``), and
:func:`require_http3` says clearly when the extra is missing.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .events import (
    AcceptWebSocket,
    CloseWebSocket,
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    Headers,
    HTTP2PrefaceReceived,
    MessageReceived,
    PongReceived,
    PushPromise,
    RequestReceived,
    RequestRejected,
    SendData,
    SendInformational,
    SendMessage,
    SendPing,
    SendTrailers,
    StartResponse,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WebSocketRequest,
    WindowOpened,
)
from .http1 import HTTP1Protocol
from .http1_wire import resolve as resolve_http1_parser
from .http2 import PREFACE, HTTP2Protocol
from .interface import Phase, ServerProtocol
from .proxy import ProxyHeader, ProxyHeaderReader

if TYPE_CHECKING:
    from .http3 import HTTP3Protocol, server_configuration
    from .quic_endpoint import Opened, QuicRouter

#: The HTTP/3 names, and the module each comes from.
_HTTP3: dict[str, str] = {
    "HTTP3Protocol": ".http3",
    "server_configuration": ".http3",
    "Opened": ".quic_endpoint",
    "QuicRouter": ".quic_endpoint",
}


def require_http3() -> None:
    """Raise ConfigError (naming quic_bind) unless aioquic, the h3 extra, is usable."""
    from ..errors import ConfigError

    try:
        importlib.import_module(".quic_endpoint", __name__)
    except ImportError as exc:
        raise ConfigError(
            "quic_bind",
            f"HTTP/3 needs aioquic: pip install 'tricorn[h3]' ({exc})",
        ) from None


def __getattr__(name: str) -> Any:
    module = _HTTP3.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "HTTP3Protocol",
    "Opened",
    "QuicRouter",
    "require_http3",
    "server_configuration",
    "ProxyHeader",
    "ProxyHeaderReader",
    "resolve_http1_parser",
    "AcceptWebSocket",
    "CloseWebSocket",
    "Command",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "H2CUpgradeRequested",
    "HTTP1Protocol",
    "HTTP2PrefaceReceived",
    "Headers",
    "MessageReceived",
    "HTTP2Protocol",
    "PREFACE",
    "Phase",
    "PongReceived",
    "PushPromise",
    "RequestReceived",
    "RequestRejected",
    "SendData",
    "SendInformational",
    "SendMessage",
    "SendPing",
    "StartResponse",
    "SendTrailers",
    "ServerProtocol",
    "StreamEnded",
    "StreamReset",
    "WebSocketClosed",
    "WebSocketRequest",
    "WindowOpened",
]
