"""Loading ``module:attribute`` and telling ASGI 3, ASGI 2 and WSGI apart."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tricorn._asgi.app import detect_interface, import_app, wrap_app
from tricorn._asgi.wsgi import WSGIAdapter
from tricorn.errors import AppLoadError


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None: ...


class ASGI3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class ASGI2Class:
    def __init__(self, scope: Any) -> None: ...

    async def __call__(self, receive: Any, send: Any) -> None: ...


def asgi2_function(scope: Any) -> Any:
    async def instance(receive: Any, send: Any) -> None: ...

    return instance


def wsgi_function(environ: Any, start_response: Any) -> list[bytes]:
    return []


class WSGIObject:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (asgi3_function, "asgi3"),
        (ASGI3Object(), "asgi3"),
        (ASGI2Class, "asgi2"),
        (asgi2_function, "asgi2"),
        (wsgi_function, "wsgi"),
        (WSGIObject(), "wsgi"),
    ],
)
def test_detect_interface(app: Any, interface: str) -> None:
    assert detect_interface(app) == interface


def test_wrap_app_gives_wsgi_apps_the_adapter() -> None:
    assert isinstance(wrap_app(wsgi_function, "auto", wsgi_max_workers=2), WSGIAdapter)
    assert wrap_app(asgi3_function, "auto", wsgi_max_workers=2) is asgi3_function


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "loadme.py").write_text(
        "async def app(scope, receive, send): ...\n"
        "class holder:\n    app = app\n"
        "def create_app():\n    return app\n"
        "not_callable = 42\n"
    )
    (tmp_path / "brokenmod.py").write_text("import no_such_dependency_xyz\n")
    sys.path.insert(0, str(tmp_path))
    yield "loadme"
    sys.path.remove(str(tmp_path))
    for name in ("loadme", "brokenmod"):
        sys.modules.pop(name, None)


def test_import_app_follows_dotted_attributes_and_factories(app_module: str) -> None:
    app = import_app(f"{app_module}:app")
    assert import_app(f"{app_module}:holder.app") is app
    assert import_app(f"{app_module}:create_app", factory=True) is app


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("loadme", "must be given as 'module:attribute'"),
        ("nosuchmodule_xyz:app", "no module named 'nosuchmodule_xyz'"),
        ("loadme:missing", "has no attribute 'missing'"),
        ("loadme:not_callable", "is not callable"),
    ],
)
def test_load_failures_are_one_line_errors(app_module: str, path: str, message: str) -> None:
    with pytest.raises(AppLoadError) as raised:
        import_app(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_import_error_inside_the_app_keeps_its_traceback(app_module: str) -> None:
    # The app's own broken import is the user's bug to see in full, not
    # "module not found" for the app.
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        import_app("brokenmod:app")
