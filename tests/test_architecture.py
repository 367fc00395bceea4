"""The import rules of ARCHITECTURE.md, checked by walking every module's AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tricorn"
PROTOCOL_LIBS = {
    "h11",
    "h2",
    "hyperframe",
    "hpack",
    "wsproto",
    "aioquic",
    "pylsqpack",
    "httptools",
}
ASYNC_LIBS = {"anyio", "trio", "asyncio", "sniffio", "uvloop"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Absolute dotted names of everything a module imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _floor(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _top(name: str) -> str:
    return name.split(".")[0]


def _tricorn_part(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "tricorn" and len(parts) > 1 else None


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_respects_the_import_rules(path: Path) -> None:
    floor = _floor(path)
    imports = _imports(path)
    tops = {_top(name) for name in imports}
    inner = {_tricorn_part(name) for name in imports} - {None}
    if floor in ("config", "errors"):
        assert not (tops & (PROTOCOL_LIBS | ASYNC_LIBS)), f"{path.name} must use only the stdlib"
        assert inner <= {"config", "errors"}, f"{path.name} imports {inner}"
    elif floor == "_protocol":
        assert not (tops & ASYNC_LIBS), f"_protocol must not import {tops & ASYNC_LIBS}"
        assert inner <= {"_protocol", "config", "errors"}, f"_protocol imports {inner}"
    elif floor == "_asgi":
        assert not (tops & PROTOCOL_LIBS), f"_asgi must not import {tops & PROTOCOL_LIBS}"
        if path.name != "wsgi.py":
            assert not (tops & ASYNC_LIBS), f"only _asgi/wsgi.py may use {tops & ASYNC_LIBS}"
        protocol_imports = {n for n in imports if _tricorn_part(n) == "_protocol"}
        assert all(n.startswith("tricorn._protocol.events") for n in protocol_imports), (
            f"_asgi may import only _protocol.events, not {protocol_imports}"
        )
        assert inner <= {"_asgi", "_protocol", "config", "errors"}, f"_asgi imports {inner}"
    elif floor == "_runtime":
        assert not (tops & PROTOCOL_LIBS), f"_runtime must not import {tops & PROTOCOL_LIBS}"
        deep = {n for n in imports if _tricorn_part(n) == "_protocol" and n.count(".") > 2}
        assert not deep, f"_runtime imports _protocol through its __init__ only, not {deep}"
        assert inner <= {"_runtime", "_protocol", "_asgi", "config", "errors"}
        if path.name != "transport.py":
            # ARCHITECTURE.md, Transports: the one room that may know its loop.
            loops = tops & {"asyncio", "trio", "uvloop", "sniffio"}
            assert not loops, f"only _runtime/transport.py may import {loops}"
    elif floor == "demo":
        assert not inner, "the demo app is an ordinary app and imports nothing of tricorn"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_protocol_layer_has_no_coroutines(path: Path) -> None:
    if _floor(path) != "_protocol":
        return
    tree = ast.parse(path.read_text())
    assert not any(isinstance(node, ast.AsyncFunctionDef) for node in ast.walk(tree))


def test_there_is_no_utils_module() -> None:
    assert not list(PACKAGE.rglob("utils.py"))


def test_the_walk_sees_every_floor() -> None:
    # Guards the test itself: if the layout moved, the rules above would
    # pass vacuously.
    floors = {_floor(path) for path in _modules()}
    assert {"_protocol", "_asgi", "_runtime", "config", "errors", "_cli"} <= floors
