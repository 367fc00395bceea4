"""The command line: argv / TOML file / environment -> Config -> run.

Options are generated from :class:`tricorn.config.Config`'s fields, so the
CLI, the config file, the environment and the docs never disagree.
Precedence: command line > environment (``TRICORN_<KEY>``) > ``--config``
file > default.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Sequence
from typing import Any

from . import __version__
from ._supervisor import run
from .config import Config, choices_of, option_specs
from .errors import ConfigError

__all__ = ["build_parser", "config_from_args", "flag_for", "main"]

ENV_PREFIX = "TRICORN_"


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, os.environ)
    except ConfigError as exc:
        parser.error(f"{_option_name(exc.key)}: {str(exc).split(': ', 1)[1]}")
    run(args.app, config)
