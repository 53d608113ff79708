"""Options as data: a config field's metadata names its flag, and the parser is generated from it.

`option` declares a field of a section dataclass together with its command-line spelling; `add_options`
turns the sections of a task config into argparse options, `values_of` reads a parsed namespace back
into them. A field's dest is its name, so the saved arguments (``args.json``, a checkpoint's
``args``) keep the reference's names.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

CLI = "cli"  # the metadata key of a field's `Spec`


@dataclass(frozen=True)
class Also:
    """Another option writing the same field (``--no_pin_mem``: store_false into pin_mem)."""

    names: tuple[str, ...]
    action: str | type[argparse.Action]
    help: str = ""


@dataclass(frozen=True)
class Spec:
    """How a field appears on the command line. ``names`` empty: no option (the value is a parser
    default, as the reference's set_defaults); ``group``: the help section (default: the section's);
    ``type`` None: the field's annotation (int / float), strings and switches take none."""

    names: tuple[str, ...]
    help: str | None = None
    choices: tuple[Any, ...] | None = None
    nargs: str | None = None
    action: str | type[argparse.Action] | None = None
    metavar: str | None = None
    type: Any = None
    group: str | None = None
    also: tuple[Also, ...] = ()


def option(default: Any, *names: str, help: str | None = None, **spec: Any) -> Any:
    """A section field: its default and its option strings (``names``; none: no option)."""
    return field(default=default, metadata={CLI: Spec(names, help, **spec)})


@dataclass(frozen=True)
class Section:
    """Metadata of a config's section field: the help group of its options, or ``cli=False``
    (a section with fixed values in this task: not on its command line, not in its saved arguments)."""

    group: str = ""
    description: str | None = None
    cli: bool = True


def section(factory: Any, group: str = "", description: str | None = None, cli: bool = True) -> Any:
    return field(default_factory=factory, metadata={CLI: Section(group, description, cli)})


def _arg_type(f: dataclasses.Field, spec: Spec) -> Any:
    if spec.type is not None:
        return spec.type
    hint = str(f.type)
    if spec.action is not None or hint.startswith("bool"):
        return None
    return float if "float" in hint else int if "int" in hint else None


def add_field_options(groups: _Groups, f: dataclasses.Field, default: Any, group: str) -> bool:
    """Adds the options of field ``f``; False when it has none (its value is a parser default)."""
    spec: Spec = f.metadata[CLI]
    if not spec.names:
        return False
    g = groups.get(spec.group or group)
    kwargs: dict[str, Any] = dict(dest=f.name, default=default, help=spec.help)
    if spec.action is not None:
        kwargs["action"] = spec.action
    else:
        kwargs["type"] = _arg_type(f, spec)
    for key in ("choices", "nargs", "metavar"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    g.add_argument(*spec.names, **kwargs)
    for alias in spec.also:
        g.add_argument(*alias.names, action=alias.action, dest=f.name, help=alias.help)
    return True


class _Groups:
    """The parser's help groups by title, created on first use."""

    def __init__(self, parser: argparse.ArgumentParser, descriptions: dict[str, str | None]):
        self.parser, self.descriptions, self.groups = parser, descriptions, {}

    def get(self, title: str) -> argparse._ArgumentGroup:
        if title not in self.groups:
            self.groups[title] = self.parser.add_argument_group(title, self.descriptions.get(title))
        return self.groups[title]
