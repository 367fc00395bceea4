"""Every exception tricorn raises.

Library exceptions (h11, h2, wsproto, ssl, anyio) are translated into these at
the seam where they enter; nothing above that seam sees a library's own error.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AppLoadError",
    "AppProtocolError",
    "BindError",
    "ClientDisconnected",
    "ConfigError",
    "LifespanError",
    "LifespanFailure",
    "LifespanUnsupported",
    "PeerProtocolError",
    "TricornError",
]


class TricornError(Exception):
    """The root of every error tricorn raises on purpose."""


class ConfigError(TricornError, ValueError):
    """A configuration key is unknown or its value is not allowed.

    The message always names the key, and the allowed values where the set
    of values is closed, so a user can fix the command line without reading
    the source.
    """

    def __init__(self, key: str, message: str, *, allowed: Iterable[str] | None = None) -> None:
        self.key = key
        self.allowed = tuple(allowed) if allowed is not None else None
        text = f"{key}: {message}"
        if self.allowed is not None:
            text += f" (allowed: {', '.join(self.allowed)})"
        super().__init__(text)


class AppLoadError(TricornError):
    """The application named as ``module:attribute`` could not be loaded."""


class PeerProtocolError(TricornError):
    """The peer broke the protocol; ``status_code`` is the HTTP answer it earns."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        self.status_code = status_code
        super().__init__(message)


class AppProtocolError(TricornError):
    """The application sent a message the ASGI spec does not allow here.

    The message names the offending ASGI message and the state of the exchange,
    so the log line alone explains what the application did wrong.
    """


class ClientDisconnected(TricornError, OSError):
    """``send()`` was called after the client went away.

    ASGI spec 2.4 asks servers to raise an ``OSError`` subclass here, so apps
    that already handle ``OSError`` stop cleanly.
    """


class LifespanError(TricornError):
    """The root of the lifespan errors."""


class LifespanFailure(LifespanError):
    """The app reported ``lifespan.startup.failed`` or ``shutdown.failed``."""


class LifespanUnsupported(LifespanError):
    """The app raised on the lifespan scope before it said anything."""


class BindError(TricornError, OSError):
    """A configured address could not be bound; the message names it."""
