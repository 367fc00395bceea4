"""The command line: argv / TOML file / environment -> Config -> run.

Options are generated from :class:`tricorn.config.Config`'s fields, so the
CLI, the config file, the environment and the docs never disagree.
Precedence: command line > environment (``TRICORN_<KEY>``) > ``--config``
file > default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from ._runtime.serve import quic_setup
from ._runtime.statsd import check_statsd
from ._runtime.tls import create_ssl_context
from ._supervisor import run
from .config import Config, choices_of, flags_of, option_specs
from .errors import ConfigError

__all__ = ["build_parser", "config_from_args", "flag_for", "flag_for_key", "main"]

ENV_PREFIX = "TRICORN_"


def flag_for(name: str) -> str:
    """The long option for a Config key."""
    return flags_of(next(f for f in option_specs() if f.name == name))[0]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line that names the problem, not the whole usage block."""
        self.exit(2, f"tricorn: error: {message}\nRun 'tricorn --help' to see every option.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.add_argument(
        "--app-dir",
        metavar="DIR",
        default="",
        help="Import the app from this directory (default: the working directory).",
    )
    for field in option_specs():
        flags = flags_of(field)
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            # argparse %-formats help; a literal % (an access log format) is doubled.
            "help": f"{field.metadata['help']} (default: {_show_default(field.default)})".replace(
                "%", "%%"
            ),
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
    if value is None or value == "":
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[Config | None, str]:
    """Merge the config file, the environment and the command line.

    Returns the config, or None and an error message that names the value
    the way the user wrote it: the flag, the environment variable, or the
    key in the file.
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if args.config:
        try:
            with open(args.config, "rb") as file:
                table = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return None, f"--config: cannot read {args.config!r}: {exc}"
        for key, value in table.items():
            values[key.replace("-", "_")] = value
            origin[key.replace("-", "_")] = f"{key!r} in {args.config}"
    for field in option_specs():
        variable = ENV_PREFIX + field.name.upper()
        if (value := environ.get(variable)) is not None:
            values[field.name] = value
            origin[field.name] = variable
    for field in option_specs():
        if field.name in vars(args):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
            origin[field.name] = flag_for(field.name)
    try:
        config = Config.from_mapping(values)
        # Config does no I/O; reading the certificate files here makes a bad
        # one a usage error like any other, before the app is imported or a
        # worker spawned (each worker builds its own context again).
        create_ssl_context(config)
        quic_setup(config)  # HTTP/3: the h3 extra, the key pair as QUIC loads it
        check_statsd(config)  # statsd_host resolves (once more in each worker)
        return config, ""
    except ConfigError as exc:
        where = origin.get(exc.key.replace("-", "_"), flag_for_key(exc.key))
        return None, f"{where}: {str(exc).split(': ', 1)[1]}"


def flag_for_key(key: str) -> str:
    """The flag of a Config key, or the key itself when it is not one."""
    name = key.replace("-", "_")
    if name in {field.name for field in option_specs()}:
        return flag_for(name)
    return key


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    config, error = config_from_args(args, os.environ)
    if config is None:
        parser.error(error)
    if args.app_dir:
        if not os.path.isdir(args.app_dir):
            parser.error(f"--app-dir: {args.app_dir!r} is not a directory")
        # Spawned workers inherit sys.path, so this reaches them too.
        sys.path.insert(0, os.path.abspath(args.app_dir))
    run(args.app, config)
