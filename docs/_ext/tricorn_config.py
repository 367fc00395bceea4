"""The ``tricorn-config`` directive: the option reference, generated from ``Config``.

Every option of tricorn is a field of :class:`tricorn.config.Config`, and the
field's ``metadata`` carries its help text, flags and metavar. The CLI builds
its argparse options from those fields; this directive builds the reference
page from the same fields with the same rules, so an option is described
exactly once, in ``config.py``.

Usage::

    .. tricorn-config::
       :summary:

    .. tricorn-config::

With ``:summary:`` the directive renders a table (option, environment
variable, default) whose first column links to the full entries. Without it,
it renders one ``.. option::`` entry per field under ``.. program:: tricorn``,
so other pages can write ``:option:`tricorn --graceful-timeout```.

The derivation rules, shared with ``tricorn._cli``:

- flags: ``tricorn.config.flags_of(field)`` (the declared flags, else
  ``--<name-with-dashes>``);
  a boolean field also gets ``--no-<flag>`` for each long flag
  (argparse's ``BooleanOptionalAction``);
- allowed values: ``tricorn.config.choices_of(field.type)``;
- environment variable: ``TRICORN_`` + the upper-cased field name;
- config file key: the field name, with underscores or dashes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["ConfigOption", "TricornConfigDirective", "describe_options", "setup"]

PROGRAM = "tricorn"
ENV_PREFIX = "TRICORN_"

logger = logging.getLogger(__name__)

# How each annotation in config.py reads in prose. An annotation missing here
# is shown as written, so a new type never breaks the build, only reads plainly.
_KIND_NAMES = {
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "str": "string",
    "int | None": "integer, or unset",
    "tuple[str, ...]": "list of strings",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigOption:
    """One Config field, seen from the command line, the environment and TOML."""

    name: str
    flags: tuple[str, ...]
    negations: tuple[str, ...]
    argument: str | None
    choices: tuple[str, ...] | None
    repeatable: bool
    annotation: str
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def file_keys(self) -> tuple[str, ...]:
        dashed = self.name.replace("_", "-")
        return (self.name,) if dashed == self.name else (dashed, self.name)

    @property
    def is_bool(self) -> bool:
        return self.annotation == "bool"

    @property
    def is_list(self) -> bool:
        return self.annotation.startswith("tuple[")

    @property
    def all_flags(self) -> tuple[str, ...]:
        return self.flags + self.negations


def _annotation_text(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or repr(annotation)


def describe_options() -> list[ConfigOption]:
    """Every Config field as a :class:`ConfigOption`, in declaration order."""
    from tricorn.config import choices_of, flags_of, option_specs

    described = []
    for field in option_specs():
        metadata = field.metadata
        annotation = _annotation_text(field.type)
        flags = flags_of(field)
        choices = choices_of(field.type)
        is_bool = annotation == "bool"
        negations = (
            tuple("--no-" + flag[2:] for flag in flags if flag.startswith("--")) if is_bool else ()
        )
        if is_bool:
            argument = None
        elif choices is not None:
            argument = "{" + ",".join(choices) + "}"
        else:
            argument = metadata.get("metavar") or field.name.upper()
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        described.append(
            ConfigOption(
                name=field.name,
                flags=flags,
                negations=negations,
                argument=argument,
                choices=choices,
                repeatable=bool(metadata.get("repeatable", False)),
                annotation=annotation,
                default=default,
                help=str(metadata.get("help") or ""),
            )
        )
    return described


# reStructuredText inline markup starts and ends with punctuation; escaping
# every ASCII punctuation character keeps help text plain text, whatever it
# contains (``fd://N`` would otherwise become a link, ``*`` emphasis, ...).
_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def _text(value: str) -> str:
    return _PUNCTUATION.sub(r"\\\1", value)


def _literal(value: object) -> str:
    text = str(value)
    if not text or text != text.strip() or "``" in text:
        # Not expressible as an inline literal; fall back to escaped text.
        return _text(repr(text))
    return f"``{text}``"


def _default(option: ConfigOption) -> str:
    value = option.default
    if value is dataclasses.MISSING:
        return "none, this option is required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _literal("true" if value else "false")
    if isinstance(value, tuple):
        return ", ".join(_literal(item) for item in value) if value else "empty"
    if isinstance(value, str) and not value:
        return "empty"
    return _literal(value)


def _kind(option: ConfigOption) -> str:
    if option.choices is not None:
        return "one of " + ", ".join(_literal(choice) for choice in option.choices)
    name = _KIND_NAMES.get(option.annotation)
    return name if name is not None else _literal(option.annotation)


def _signature(option: ConfigOption) -> str:
    parts = [f"{flag} {option.argument}" if option.argument else flag for flag in option.flags]
    parts.extend(option.negations)
    return ", ".join(parts)


def _entry_lines(option: ConfigOption) -> list[str]:
    lines = [f".. option:: {_signature(option)}", ""]
    lines.append("   " + _text(" ".join(option.help.split())))
    lines.append("")
    if option.repeatable:
        lines.append("   :Repeatable: yes, give the flag once per value")
    lines.append("   :Config file key: " + " or ".join(_literal(key) for key in option.file_keys))
    env = _literal(option.env_var)
    if option.is_list:
        env += ", values separated by commas"
    lines.append(f"   :Environment: {env}")
    lines.append(f"   :Type: {_kind(option)}")
    lines.append(f"   :Default: {_default(option)}")
    lines.append("")
    return lines


def _summary_lines(options: list[ConfigOption]) -> list[str]:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 40 40 20",
        "",
        "   * - Option",
        "     - Environment variable",
        "     - Default",
    ]
    for option in options:
        shown = ", ".join(option.flags)
        if option.negations:
            shown += " / " + ", ".join(option.negations)
        link = f":option:`{shown} <{PROGRAM} {option.flags[0]}>`"
        lines.extend(
            [
                f"   * - {link}",
                f"     - {_literal(option.env_var)}",
                f"     - {_default(option)}",
            ]
        )
    lines.append("")
    return lines


class TricornConfigDirective(SphinxDirective):
    """Render tricorn's option reference from ``tricorn.config.Config``."""

    has_content = False
    required_arguments = 0
    optional_arguments = 0
    option_spec = {"summary": directives.flag}  # noqa: RUF012 (docutils' own attribute)

    def run(self) -> list[nodes.Node]:
        import tricorn.config

        # Rebuild the page whenever the fields, or this renderer, change.
        if tricorn.config.__file__:
            self.env.note_dependency(tricorn.config.__file__)
        self.env.note_dependency(__file__)

        options = describe_options()
        for option in options:
            if not option.help:
                logger.warning(
                    "tricorn-config: Config field %r has no help text",
                    option.name,
                    location=self.get_location(),
                )

        if "summary" in self.options:
            lines = _summary_lines(options)
        else:
            lines = [f".. program:: {PROGRAM}", ""]
            for option in options:
                lines.extend(_entry_lines(option))

        source = self.get_source_info()
        content = StringList()
        for line in lines:
            content.append(line, source[0] or "<tricorn-config>", source[1] or 0)
        container = nodes.container(classes=["tricorn-config"])
        container.document = self.state.document
        nested_parse_with_titles(self.state, content, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("tricorn-config", TricornConfigDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
