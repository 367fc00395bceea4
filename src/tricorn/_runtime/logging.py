"""tricorn's two loggers: ``tricorn.error`` (what went wrong) and ``tricorn.access``.

Only the runtime logs. The CLI configures handlers; as a library tricorn
leaves handler setup to the host program.
"""

from __future__ import annotations

import logging
from typing import Final

from .._asgi.types import HTTPScope, WebSocketScope

__all__ = ["access_logger", "configure_logging", "error_logger", "log_access"]

error_logger: Final = logging.getLogger("tricorn.error")
access_logger: Final = logging.getLogger("tricorn.access")


def configure_logging(level: str, *, access_log: bool) -> None:
    """Set up stderr logging for the CLI."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    for logger in (error_logger, access_logger):
        logger.handlers[:] = [handler]
        logger.propagate = False
    error_logger.setLevel(level.upper())
    access_logger.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)


def format_client(client: tuple[str, int] | None) -> str:
    if client is None:
        return "-"
    host, port = client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_access(
    scope: HTTPScope | WebSocketScope, status: int | None, size: int, duration: float
) -> None:
    """One access line; a WebSocket's is written when its handshake is answered."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    access_logger.info(
        '%s "%s %s HTTP/%s" %s %d %.1fms',
        format_client(scope["client"]),
        scope["method"] if scope["type"] == "http" else "GET",
        target,
        scope["http_version"],
        status if status is not None else "-",
        size,
        duration * 1000,
    )
