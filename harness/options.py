"""Codec options, declared once by the plugin and checked by the harness.

A `CodecSpec.options` maps each option a codec accepts to its default: a plain string (any value
accepted, the codec checks it) or an `Option` saying what a value must be. The harness checks the
`-o KEY=VALUE` options of a run against the declaration before any work, with one error naming
the codec, the option and what it must be, so a plugin does not re-check names and types by hand.
The codec's factory still receives the strings the user gave (they are part of a run's key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math

from harness.errors import CodecError, unknown_name

KINDS = ("str", "int", "float", "bool", "path")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """What one codec option's value must be. `kind`: str, int, float, bool or path."""

    default: str
    kind: str = "str"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    #: a setting of the machine that runs the codec (a program, a folder, a timeout, threads), not of
    #: the coding: never taken from someone else's bundle or run directory. Paths are always local.
    local: bool = False

    @property
    def is_local(self) -> bool:
        return self.local or self.kind == "path"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Option kind must be one of {KINDS}, got {self.kind!r}")

    def problem(self, value: str) -> str | None:
        """None when `value` is acceptable, else what it must be."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.kind == "bool":
            return None if value.lower() in TRUE + FALSE else "must be true or false"
        if self.kind in ("int", "float"):
            try:
                number = int(value) if self.kind == "int" else float(value)
            except ValueError:
                return f"must be {'an integer' if self.kind == 'int' else 'a number'}"
            if not math.isfinite(number):
                return "must be finite"
            if self.minimum is not None and number < self.minimum:
                return f"must be at least {self.minimum:g}"
            if self.maximum is not None and number > self.maximum:
                return f"must be at most {self.maximum:g}"
        if self.kind == "path" and not value:
            return "must be a path"
        return None

    def constraint(self) -> str:
        """What a value must be: `int 0..9`, `str {zero|edge}`, `path`."""
        bounds = ""
        if self.choices:
            bounds = " {" + "|".join(self.choices) + "}"
        elif self.minimum is not None or self.maximum is not None:
            low = "" if self.minimum is None else f"{self.minimum:g}"
            high = "" if self.maximum is None else f"{self.maximum:g}"
            bounds = f" {low}..{high}"
        return f"{self.kind}{bounds}"

    def describe(self) -> str:
        return f"{self.constraint()}, default {self.default!r}"


def truthy(value: str) -> bool:
    """A checked bool option's meaning (1/true/yes/on, any case)."""
    return str(value).lower() in TRUE


def declared(options: Mapping[str, str | Option]) -> dict[str, Option]:
    """A spec's option declaration with plain-string defaults read as free-form str options."""
    return {name: value if isinstance(value, Option) else Option(str(value)) for name, value in options.items()}


def coding_options(declaration: Mapping[str, str | Option], given: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """`given` split for a checker: the options that describe the coding (taken from a bundle) and
    the names of those that are local to the machine that made it, or not declared at all (dropped:
    the checker's own defaults and -o values supply them)."""
    options = declared(declaration)
    kept = {k: v for k, v in given.items() if k in options and not options[k].is_local}
    return kept, sorted(set(given) - set(kept))


def check_options(codec: str, declaration: Mapping[str, str | Option], given: Mapping[str, str]) -> None:
    """Raise CodecError naming the codec and the option when `given` does not fit the declaration."""
    options = declared(declaration)
    for name, value in given.items():
        if name not in options:
            raise CodecError(f"{codec}: {unknown_name('option', name, options)}")
        problem = options[name].problem(str(value))
        if problem:
            raise CodecError(f"{codec}: option {name}={value!r} {problem} ({options[name].describe()})")
