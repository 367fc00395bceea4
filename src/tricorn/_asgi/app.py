"""Load an application from ``module:attribute`` and make it an ASGI 3 callable."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Literal, cast

from ..config import Interface
from ..errors import AppLoadError
from .types import ASGI2App, ASGI3App, ASGIReceive, ASGISend

__all__ = ["detect_interface", "import_app", "load_app", "wrap_app"]


def import_app(path: str, *, factory: bool = False) -> Any:
    """Import ``module:attribute`` (attribute may be dotted) and return the object.

    Failures become one-line :class:`AppLoadError` messages that say what was
    not found; an import error raised *inside* the app's own module is kept
    as the cause so its traceback is not lost.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"app {path!r} must be given as 'module:attribute', e.g. 'main:app'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AppLoadError(
                f"could not import module {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        if not callable(obj):
            raise AppLoadError(f"factory {path!r} is not callable")
        obj = obj()
    if not callable(obj):
        raise AppLoadError(f"{path!r} is not callable; an ASGI or WSGI application is")
    return obj


def _call_target(app: Any) -> Any:
    if inspect.isfunction(app) or inspect.ismethod(app):
        return app
    return getattr(app, "__call__", app)  # noqa: B004 - objects with __call__ are apps


def _positional_count(target: Any) -> int | None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in signature.parameters.values() if p.kind in kinds)


def detect_interface(app: Any) -> Literal["asgi3", "asgi2", "wsgi"]:
    """Tell ASGI 3, ASGI 2 and WSGI apart by signature.

    A class is an ASGI 2 app (instantiated with the scope); a coroutine
    function ``(scope, receive, send)`` is ASGI 3; a plain callable of two
    positional arguments ``(environ, start_response)`` is WSGI; of one, ASGI 2.
    """
    if inspect.isclass(app):
        return "asgi2"
    target = _call_target(app)
    if inspect.iscoroutinefunction(target):
        return "asgi3"
    count = _positional_count(target)
    if count == 2:
        return "wsgi"
    if count == 1:
        return "asgi2"
    return "asgi3"


def wrap_app(
    app: Any, interface: Interface, *, wsgi_max_workers: int, multiprocess: bool = False
) -> ASGI3App:
    """Return an ASGI 3 callable for ``app`` under the chosen interface.

    ``multiprocess`` says whether other processes serve the same app
    (``wsgi.multiprocess``).
    """
    if interface == "auto":
        interface = detect_interface(app)
    if interface == "asgi2":
        return _asgi2_to_asgi3(cast(ASGI2App, app))
    if interface == "wsgi":
        from .wsgi import WSGIAdapter

        return WSGIAdapter(app, max_workers=wsgi_max_workers, multiprocess=multiprocess)
    return cast(ASGI3App, app)


def _asgi2_to_asgi3(app: ASGI2App) -> ASGI3App:
    async def asgi3(scope: Any, receive: ASGIReceive, send: ASGISend) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3


def load_app(
    path: str,
    *,
    interface: Interface,
    factory: bool,
    wsgi_max_workers: int,
    multiprocess: bool = False,
) -> ASGI3App:
    """Import and wrap in one step, with the working directory importable."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, ".")
    return wrap_app(
        import_app(path, factory=factory),
        interface,
        wsgi_max_workers=wsgi_max_workers,
        multiprocess=multiprocess,
    )
