"""The command line: argv / TOML file / environment -> Config -> run.

Options are generated from :class:`tricorn.config.Config`'s fields, so the
CLI, the config file, the environment and the docs never disagree.
Precedence: command line > environment (``TRICORN_<KEY>``) > ``--config``
file > default.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tomllib
from collections.abc import Sequence
from typing import Any, NoReturn

import anyio

from . import __version__
from ._asgi.app import load_app
from ._asgi.types import ASGI3App
from ._runtime.logging import configure_logging, error_logger
from ._runtime.serve import serve
from .config import Config, choices_of, option_specs
from .errors import AppLoadError, BindError, ConfigError, LifespanFailure

__all__ = ["build_parser", "config_from_args", "flag_for", "main"]

ENV_PREFIX = "TRICORN_"

#: Exit statuses: 1 the app could not be loaded or served, 2 bad usage or
#: configuration (argparse's own convention), 3 lifespan startup failed.
EXIT_FAILURE, EXIT_USAGE, EXIT_STARTUP = 1, 2, 3


def flag_for(name: str) -> str:
    """The long option for a Config key."""
    field = next(f for f in option_specs() if f.name == name)
    flags: tuple[str, ...] = field.metadata["flags"]
    return flags[0] if flags else "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tricorn",
        description="Serve an ASGI 3, ASGI 2 or WSGI application over HTTP/1.1.",
        epilog=f"Every option can also be set as {ENV_PREFIX}<OPTION> in the environment "
        "(e.g. TRICORN_KEEP_ALIVE_TIMEOUT=10) or as a key in the --config TOML file.",
    )
    parser.add_argument("app", metavar="APP", help="The application, as module:attribute.")
    parser.add_argument(
        "--config", metavar="FILE", help="A TOML file whose top-level keys are options."
    )
    parser.add_argument("--version", action="version", version=f"tricorn {__version__}")
    for field in option_specs():
        flags = field.metadata["flags"] or ("--" + field.name.replace("_", "-"),)
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": f"{field.metadata['help']} (default: {_show_default(field.default)})",
        }
        choices = choices_of(field.type)
        if field.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices is not None:
            kwargs["choices"] = choices
        else:
            kwargs["metavar"] = field.metadata["metavar"]
        if field.metadata["repeatable"]:
            kwargs["action"] = "append"
        parser.add_argument(*flags, **kwargs)
    return parser


def _show_default(value: object) -> str:
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_from_args(
    args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]
) -> Config:
    """Merge the config file, the environment and the command line."""
    values: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as file:
                values.update(tomllib.load(file))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("--config", f"cannot read {args.config!r}: {exc}") from None
    names = {field.name for field in option_specs()}
    for name in names:
        if (value := environ.get(ENV_PREFIX + name.upper())) is not None:
            values[name] = value
    for name in names:
        if name in vars(args):
            value = getattr(args, name)
            values[name] = tuple(value) if isinstance(value, list) else value
    return Config.from_mapping(values)


def _option_name(key: str) -> str:
    """Name a config key the way the user wrote it on the command line."""
    name = key.replace("-", "_")
    if name in {field.name for field in option_specs()}:
        return flag_for(name)
    return key


def _fail(status: int, message: str) -> NoReturn:
    print(f"tricorn: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _leaf(error: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, os.environ)
    except ConfigError as exc:
        parser.error(f"{_option_name(exc.key)}: {str(exc).split(': ', 1)[1]}")
    configure_logging(config.log_level, access_log=config.access_log)
    try:
        app = load_app(
            args.app,
            interface=config.interface,
            factory=config.factory,
            wsgi_max_workers=config.wsgi_max_workers,
        )
    except AppLoadError as exc:
        _fail(EXIT_FAILURE, str(exc))
    backend, options = _backend(config.worker_class)
    try:
        anyio.run(_serve_until_signal, app, config, backend=backend, backend_options=options)
    except KeyboardInterrupt:
        pass  # a second Ctrl+C during the graceful shutdown: stop now.
    except BaseException as exc:
        error = _leaf(exc)
        if isinstance(error, LifespanFailure):
            _fail(EXIT_STARTUP, f"lifespan startup failed: {error}")
        if isinstance(error, BindError):
            _fail(EXIT_FAILURE, str(error))
        if isinstance(error, KeyboardInterrupt):
            return
        raise


def _backend(worker_class: str) -> tuple[str, dict[str, Any]]:
    if worker_class == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            _fail(EXIT_USAGE, "--worker-class uvloop needs uvloop: pip install 'tricorn[uvloop]'")
        return "asyncio", {"use_uvloop": True}
    if worker_class == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            _fail(EXIT_USAGE, "--worker-class trio needs trio: pip install 'tricorn[trio]'")
    return worker_class, {}


async def _serve_until_signal(app: ASGI3App, config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    async with anyio.create_task_group() as task_group:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await task_group.start(serve, app, config)
            async for signum in signals:
                error_logger.info(
                    "received %s, shutting down (graceful timeout %gs)",
                    signal.Signals(signum).name,
                    config.graceful_timeout,
                )
                task_group.cancel_scope.cancel()
                break
