"""tricorn: an ASGI server built on structured concurrency."""

from ._runtime.serve import serve
from .config import Config

__version__ = "0.1.0"

__all__ = ["Config", "__version__", "serve"]
