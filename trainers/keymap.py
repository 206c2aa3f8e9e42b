"""State-dict names of another codebase <-> ours: whole-key templates that read both ways.

A `Rule` pairs a template of their key with one of ours. Placeholders: `{name}` digits, `{name+1}` / `{name-1}`
digits with an offset (`layer{s+1}` <-> `stages.{s}`), `{name*}` any text (shortest first), `{name:a|b}` a regular
expression. A key takes the first rule whose template matches it whole; a key no rule matches keeps its name.
`fit` renames a state dict onto a model's own and refuses one that does not fit, naming what is missing, left over
or shaped differently.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch

SLOT = re.compile(r"\{(\w+)(?:([+-]\d+)|(\*)|:([^{}]+))?\}")


class KeyMapError(ValueError):
    """A state dict that does not fit the model it was meant for."""


def slot_patterns(*texts: str) -> dict[str, str]:
    """What each placeholder of the templates matches; one written `{name*}` or `{name:re}` on either side
    matches the same on both."""
    found: dict[str, str] = {}
    for text in texts:
        for m in SLOT.finditer(text):
            name, _, anything, pattern = m.groups()
            if anything or pattern:
                found[name] = ".+?" if anything else pattern
            found.setdefault(name, "[0-9]+")
    return found


@dataclass(frozen=True)
class Template:
    text: str
    patterns: Mapping[str, str]
    regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts, pos = [], 0
        for m in SLOT.finditer(self.text):
            parts += [re.escape(self.text[pos:m.start()]), f"(?P<{m.group(1)}>{self.patterns[m.group(1)]})"]
            pos = m.end()
        object.__setattr__(self, "regex", re.compile("".join(parts) + re.escape(self.text[pos:])))

    def read(self, key: str) -> dict[str, str | int] | None:
        """The placeholders' values in `key` (offsets taken off), or None when the template does not match."""
        m = self.regex.fullmatch(key)
        if m is None:
            return None
        values: dict[str, str | int] = dict(m.groupdict())
        for slot in SLOT.finditer(self.text):
            name, offset = slot.group(1), slot.group(2)
            if offset:
                values[name] = int(values[name]) - int(offset)
        return values

    def write(self, values: Mapping[str, str | int]) -> str:
        def fill(m: re.Match) -> str:
            value = values[m.group(1)]
            return str(int(value) + int(m.group(2))) if m.group(2) else str(value)

        return SLOT.sub(fill, self.text)


@dataclass(frozen=True)
class Rule:
    theirs: str
    ours: str

    def templates(self) -> tuple[Template, Template]:
        patterns = slot_patterns(self.theirs, self.ours)
        return Template(self.theirs, patterns), Template(self.ours, patterns)


@dataclass(frozen=True)
class KeyMap:
    rules: tuple[Rule, ...]

    @cached_property
    def _pairs(self) -> list[tuple[Template, Template]]:
        return [r.templates() for r in self.rules]

    def to_ours(self, key: str) -> str:
        return _rename(key, self._pairs)

    def to_theirs(self, key: str) -> str:
        return _rename(key, [(b, a) for a, b in self._pairs])


def _rename(key: str, pairs: Sequence[tuple[Template, Template]]) -> str:
    for src, dst in pairs:
        values = src.read(key)
        if values is not None:
            return dst.write(values)
    return key


def same_but_unit_axes(a: torch.Size, b: torch.Size) -> bool:
    """Shapes equal once their axes of length 1 are dropped ([D, 3, 16, 16] and [D, 3, 1, 16, 16])."""
    return a != b and [n for n in a if n != 1] == [n for n in b if n != 1]


def fit(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], keymap: KeyMap, what: str
        ) -> dict[str, torch.Tensor]:
    """`state` (their names) renamed onto `own` (a model's state dict), every tensor present and of our shape.

    A tensor that differs from ours only by axes of length 1 (a 2D patch kernel for our time-1 3D one, a 1x1x1
    conv classifier for our linear one) is reshaped; a BatchNorm's `num_batches_tracked` the file lacks keeps
    ours; anything else that does not fit raises KeyMapError.
    """
    out: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for key, value in state.items():
        ours = keymap.to_ours(key)
        if ours in sources:
            raise KeyMapError(f"{what}: {sources[ours]!r} and {key!r} both map to {ours!r}")
        sources[ours] = key
        if ours in own and same_but_unit_axes(value.shape, own[ours].shape):
            value = value.reshape(own[ours].shape)
        out[ours] = value
    out.update({k: v for k, v in own.items() if k.endswith(".num_batches_tracked") and k not in out})
    missing = [k for k in own if k not in out]
    unexpected = [sources[k] for k in out if k not in own]
    shapes = [f"{sources[k]} {tuple(v.shape)} (ours {k} {tuple(own[k].shape)})" for k, v in out.items()
              if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{label} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                    for label, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("different shapes", shapes)) if keys]
        raise KeyMapError(f"{what} does not fit: " + "; ".join(problems))
    return {k: out[k] for k in own}
