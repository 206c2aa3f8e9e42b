"""The demo world's classes: one row per action (shape, colours, texture, motion) and the event → set → element tree."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassSpec:
    """One action class: what the acting object looks like and how it moves.

    `reverse` plays the motion backwards in time, so a class and its partner (same shape, same motion,
    `reverse` flipped) show the same set of frames in opposite orders.
    """

    name: str
    shape: str
    colour: tuple[int, int, int]   # RGB of the main tone
    colour2: tuple[int, int, int]  # RGB of the texture's second tone
    texture: str                   # solid, stripes, checker, dots, rings
    motion: str                    # a key of curate.demo.synth.render.MOTIONS
    reverse: bool
    set: str                       # hierarchy level 2 (by shape)
    event: str                     # hierarchy level 1 (by kind of motion)


# Order matters: a world with N classes uses the first N rows, so small worlds keep whole pairs.
CLASS_TABLE: tuple[ClassSpec, ...] = (
    ClassSpec("square slides left", "square", (220, 40, 40), (250, 170, 60), "stripes", "slide_x", True, "squares", "travel"),
    ClassSpec("square slides right", "square", (220, 40, 40), (250, 170, 60), "stripes", "slide_x", False, "squares", "travel"),
    ClassSpec("triangle grows", "triangle", (40, 80, 230), (150, 220, 250), "checker", "scale", False, "triangles", "transform"),
    ClassSpec("triangle shrinks", "triangle", (40, 80, 230), (150, 220, 250), "checker", "scale", True, "triangles", "transform"),
    ClassSpec("disc wanders", "disc", (240, 220, 40), (120, 60, 20), "dots", "wander", False, "discs", "roam"),
    ClassSpec("star spins clockwise", "star", (30, 180, 60), (230, 250, 120), "solid", "spin", False, "stars", "transform"),
    ClassSpec("star spins anticlockwise", "star", (30, 180, 60), (230, 250, 120), "solid", "spin", True, "stars", "transform"),
    ClassSpec("ring rises", "ring", (250, 130, 20), (90, 30, 120), "stripes", "slide_y", True, "rings", "travel"),
    ClassSpec("ring falls", "ring", (250, 130, 20), (90, 30, 120), "stripes", "slide_y", False, "rings", "travel"),
    ClassSpec("cross wobbles", "cross", (210, 40, 200), (250, 250, 250), "checker", "wobble", False, "crosses", "roam"),
    ClassSpec("hexagon orbits clockwise", "hexagon", (20, 200, 210), (20, 60, 90), "rings", "orbit", False, "hexagons", "travel"),
    ClassSpec("hexagon orbits anticlockwise", "hexagon", (20, 200, 210), (20, 60, 90), "rings", "orbit", True, "hexagons",
              "travel"),
    ClassSpec("diamond fades in", "diamond", (250, 250, 250), (200, 30, 60), "dots", "fade", False, "diamonds", "transform"),
    ClassSpec("diamond fades out", "diamond", (250, 250, 250), (200, 30, 60), "dots", "fade", True, "diamonds", "transform"),
    ClassSpec("heart bounces", "heart", (240, 90, 150), (120, 10, 40), "solid", "bounce", False, "hearts", "roam"),
    ClassSpec("bar stretches", "bar", (120, 70, 30), (240, 200, 150), "stripes", "stretch", False, "bars", "transform"),
    ClassSpec("bar squeezes", "bar", (120, 70, 30), (240, 200, 150), "stripes", "stretch", True, "bars", "transform"),
)
MAX_CLASSES = len(CLASS_TABLE)


def classes(num_classes: int) -> list[ClassSpec]:
    """The first num_classes rows of the class table."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"the demo world has 2..{MAX_CLASSES} classes, asked for {num_classes}")
    return list(CLASS_TABLE[:num_classes])


def reversal_pairs(specs: list[ClassSpec]) -> list[tuple[int, int]]:
    """Index pairs of classes that differ only in the temporal order of their motion."""
    pairs = []
    for i, a in enumerate(specs):
        for j in range(i + 1, len(specs)):
            b = specs[j]
            if (a.shape, a.motion) == (b.shape, b.motion) and a.reverse != b.reverse:
                pairs.append((i, j))
    return pairs


def hierarchy(specs: list[ClassSpec]) -> dict:
    """The three-level tree in FineGym's conventions: event ids 1.., set ids 10*event + k, element id = label id."""
    events: list[dict] = []
    sets: list[dict] = []
    elements: list[dict] = []
    for label_id, spec in enumerate(specs):
        ev = next((e for e in events if e["name"] == spec.event), None)
        if ev is None:
            ev = {"id": len(events) + 1, "name": spec.event}
            events.append(ev)
        st = next((s for s in sets if s["name"] == spec.set), None)
        if st is None:
            k = sum(s["event_id"] == ev["id"] for s in sets) + 1
            st = {"id": 10 * ev["id"] + k, "name": spec.set, "event_id": ev["id"]}
            sets.append(st)
        elements.append({"id": label_id, "name": spec.name, "set_id": st["id"], "event_id": ev["id"]})
    return {"events": events, "sets": sets, "elements": elements}
