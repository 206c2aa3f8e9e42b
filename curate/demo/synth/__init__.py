"""The embedded demo world: synthetic action videos, their web corpus with ground truth, and a loopback web.

`World`, `WorldSpec`, `load_world` and `make_world` load on first use, so a submodule (the web's fault table)
imports without pandas."""
from __future__ import annotations

import importlib

_WHERE = {"World": "world", "load_world": "world", "make_world": "world", "WorldSpec": "plan"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"curate.demo.synth.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
