"""Drawing the demo world: cluttered backgrounds, distractors, and acting objects whose shape, texture and motion
make the class. Coordinates are normalised (x, y in 0..1, y down); sizes are fractions of the shorter side."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from curate.demo.synth.classes import ClassSpec

STATE_KEYS = ("cx", "cy", "r", "theta", "alpha", "aspect", "visible")
States = dict  # STATE_KEYS -> float arrays of one length (visible is 0/1)


# ------------------------------------------------------------------ motions: rng, n frames -> States


def _states(n: int, **arrays) -> States:
    base = {"cx": 0.5, "cy": 0.5, "r": 0.15, "theta": 0.0, "alpha": 1.0, "aspect": 1.0, "visible": 1.0}
    base.update(arrays)
    return {k: np.broadcast_to(np.asarray(base[k], dtype=np.float64), (n,)).copy() for k in STATE_KEYS}


def _ramp(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)


def _drift(rng: np.random.Generator, n: int, amount: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """A small straight drift in a random direction (symmetric, so reversing time keeps its distribution)."""
    ang = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(0, amount) * (_ramp(n) - 0.5)
    return np.cos(ang) * step, np.sin(ang) * step


def _slide(rng: np.random.Generator, n: int, axis: int) -> States:
    r = rng.uniform(0.12, 0.17)
    span = rng.uniform(0.35, 0.5)
    lo = rng.uniform(r, 1 - r - span)
    along = lo + span * _ramp(n)
    across = rng.uniform(0.3, 0.7) + _drift(rng, n, 0.05)[0]
    cx, cy = (along, across) if axis == 0 else (across, along)
    return _states(n, cx=cx, cy=cy, r=r, theta=rng.uniform(-0.2, 0.2))


def motion_slide_x(rng: np.random.Generator, n: int) -> States:
    """Moves right across about 40 % of the frame (reversed: left)."""
    return _slide(rng, n, 0)


def motion_slide_y(rng: np.random.Generator, n: int) -> States:
    """Moves down (reversed: up)."""
    return _slide(rng, n, 1)


def motion_scale(rng: np.random.Generator, n: int) -> States:
    """Grows from small to large in place (reversed: shrinks)."""
    r0, r1 = rng.uniform(0.06, 0.09), rng.uniform(0.19, 0.24)
    dx, dy = _drift(rng, n)
    return _states(n, cx=rng.uniform(0.3, 0.7) + dx, cy=rng.uniform(0.3, 0.7) + dy, r=r0 + (r1 - r0) * _ramp(n),
                   theta=rng.uniform(-0.2, 0.2))


def motion_spin(rng: np.random.Generator, n: int) -> States:
    """Turns clockwise on screen by 100-170 degrees (reversed: anticlockwise)."""
    sweep = np.deg2rad(rng.uniform(100, 170))
    dx, dy = _drift(rng, n)
    return _states(n, cx=rng.uniform(0.3, 0.7) + dx, cy=rng.uniform(0.3, 0.7) + dy, r=rng.uniform(0.15, 0.2),
                   theta=rng.uniform(0, 2 * np.pi) + sweep * _ramp(n))


def motion_orbit(rng: np.random.Generator, n: int) -> States:
    """Travels clockwise along a circle (reversed: anticlockwise)."""
    radius, r = rng.uniform(0.15, 0.2), rng.uniform(0.1, 0.13)
    c = rng.uniform(0.5 - 0.35 + radius + r, 0.5 + 0.35 - radius - r, size=2) if radius + r < 0.35 else (0.5, 0.5)
    phi = rng.uniform(0, 2 * np.pi) + np.deg2rad(rng.uniform(180, 300)) * _ramp(n)
    return _states(n, cx=c[0] + radius * np.cos(phi), cy=c[1] + radius * np.sin(phi), r=r, theta=rng.uniform(0, 1))


def motion_fade(rng: np.random.Generator, n: int) -> States:
    """Fades from nearly transparent to opaque (reversed: fades out)."""
    dx, dy = _drift(rng, n)
    return _states(n, cx=rng.uniform(0.3, 0.7) + dx, cy=rng.uniform(0.3, 0.7) + dy, r=rng.uniform(0.14, 0.19),
                   alpha=0.08 + 0.92 * _ramp(n), theta=rng.uniform(-0.3, 0.3))


def motion_stretch(rng: np.random.Generator, n: int) -> States:
    """Widens while getting thinner (reversed: squeezes)."""
    a0, a1 = rng.uniform(0.55, 0.7), rng.uniform(1.5, 1.8)
    dx, dy = _drift(rng, n)
    return _states(n, cx=rng.uniform(0.35, 0.65) + dx, cy=rng.uniform(0.3, 0.7) + dy, r=rng.uniform(0.13, 0.17),
                   aspect=a0 * (a1 / a0) ** _ramp(n), theta=rng.uniform(-0.2, 0.2))


def motion_wander(rng: np.random.Generator, n: int) -> States:
    """A smooth random walk."""
    r = rng.uniform(0.12, 0.17)
    vel = np.cumsum(rng.normal(0, 0.012, size=(n, 2)), axis=0) + rng.normal(0, 0.015, size=2)
    pos = np.cumsum(vel, axis=0) + rng.uniform(0.35, 0.65, size=2)
    pos = np.clip(pos, r, 1 - r)
    return _states(n, cx=pos[:, 0], cy=pos[:, 1], r=r)


def motion_wobble(rng: np.random.Generator, n: int) -> States:
    """Rocks back and forth around its centre."""
    dx, dy = _drift(rng, n)
    t = _ramp(n)
    theta = rng.uniform(0, 1) + rng.uniform(0.25, 0.4) * np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * t + rng.uniform(0, 6.3))
    return _states(n, cx=rng.uniform(0.3, 0.7) + dx, cy=rng.uniform(0.3, 0.7) + dy, r=rng.uniform(0.14, 0.19), theta=theta)


def motion_bounce(rng: np.random.Generator, n: int) -> States:
    """Hops up and down (time-symmetric) while drifting sideways."""
    r = rng.uniform(0.12, 0.16)
    t = _ramp(n)
    hops = rng.uniform(1.5, 2.5)
    height = rng.uniform(0.2, 0.3)
    base = rng.uniform(0.6, 0.8)
    cy = base - height * np.abs(np.sin(np.pi * hops * t + rng.uniform(0, np.pi)))
    cx = rng.uniform(0.3, 0.7) + _drift(rng, n, 0.15)[0]
    return _states(n, cx=cx, cy=np.clip(cy, r, 1 - r), r=r)


MOTIONS = {
    "slide_x": motion_slide_x, "slide_y": motion_slide_y, "scale": motion_scale, "spin": motion_spin,
    "orbit": motion_orbit, "fade": motion_fade, "stretch": motion_stretch, "wander": motion_wander,
    "wobble": motion_wobble, "bounce": motion_bounce,
}


def act(spec: ClassSpec, rng: np.random.Generator, n: int) -> States:
    """n frames of the class's motion; reversed classes play the same motion backwards."""
    states = MOTIONS[spec.motion](rng, n)
    if spec.reverse:
        states = {k: v[::-1].copy() for k, v in states.items()}
    return states


def hold(states: States, index: int, n: int) -> States:
    """The object standing still in the state of frame `index` for n frames."""
    return {k: np.full(n, v[index]) for k, v in states.items()}


def absent(n: int) -> States:
    """n frames without the object."""
    s = _states(n)
    s["visible"][:] = 0.0
    return s


def concat(parts: list[States]) -> States:
    return {k: np.concatenate([p[k] for p in parts]) for k in STATE_KEYS}


# ------------------------------------------------------------------ shapes and textures in object coordinates


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return np.maximum(au, av) <= 0.8
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "ring":
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= 0.3)
    if shape == "triangle":
        return (v <= 0.6) & (v >= -1.0 + 1.7 * au)
    if shape == "star":
        phi = np.mod(np.arctan2(v, u) + np.pi / 2, 2 * np.pi / 5) / (2 * np.pi / 5)
        bound = 0.42 + 0.58 * np.abs(2 * phi - 1) ** 1.5
        return np.hypot(u, v) <= bound
    if shape == "cross":
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if shape == "hexagon":
        return np.maximum(au * 0.866 + av * 0.5, av) <= 0.9
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.3
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if shape == "bar":
        return (au <= 0.95) & (av <= 0.32)
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if texture == "solid":
        return np.zeros(u.shape, dtype=bool)
    if texture == "stripes":
        return np.floor((u + v) * 2.5).astype(np.int64) % 2 == 1
    if texture == "checker":
        return (np.floor(u * 2.5).astype(np.int64) + np.floor(v * 2.5).astype(np.int64)) % 2 == 1
    if texture == "dots":
        return (np.mod(u * 3, 1) - 0.5) ** 2 + (np.mod(v * 3, 1) - 0.5) ** 2 < 0.07
    if texture == "rings":
        return np.floor(np.hypot(u, v) * 4).astype(np.int64) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")


# ------------------------------------------------------------------ scenes


@dataclass
class Actor:
    """An acting object: its class, its per-frame states and its colours (jittered per instance)."""

    spec: ClassSpec
    states: States
    colours: np.ndarray  # (2, 3) float RGB

    @classmethod
    def of(cls, spec: ClassSpec, states: States, rng: np.random.Generator, size: float = 1.0) -> "Actor":
        """The instance's look: colours jittered per channel and the size scaled by `size` x 0.8-1.2."""
        gain = rng.uniform(0.75, 1.25, size=(1, 3))
        shift = rng.uniform(-25, 25, size=(1, 3))
        colours = np.clip(np.array([spec.colour, spec.colour2], dtype=np.float64) * gain + shift, 0, 255)
        return cls(spec, dict(states, r=states["r"] * size * rng.uniform(0.8, 1.2)), colours)


@dataclass
class Movers:
    """Objects moving without meaning: small distractors and larger 'bystander' blobs, bouncing off the edges."""

    pos: np.ndarray     # (T, k, 2) normalised centres
    size: np.ndarray    # (k,) fraction of the shorter side
    colour: np.ndarray  # (k, 3)
    kind: list[str] = field(default_factory=list)  # dot, box, blob
    angle: np.ndarray | None = None  # (T, k) degrees, for blobs

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, k: int, sizes: tuple[float, float], kinds: tuple[str, ...],
               speed: tuple[float, float] = (0.01, 0.035)) -> "Movers":
        size = rng.uniform(*sizes, size=k)
        start = rng.uniform(0.1, 0.9, size=(k, 2))
        ang = rng.uniform(0, 2 * np.pi, size=k)
        vel = rng.uniform(*speed, size=(k, 1)) * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        turn = rng.normal(0, 0.15, size=(n, k)).cumsum(axis=0)
        rot = np.stack([np.cos(turn), np.sin(turn)], axis=-1)
        steps = np.stack([vel[None, :, 0] * rot[..., 0] - vel[None, :, 1] * rot[..., 1],
                          vel[None, :, 0] * rot[..., 1] + vel[None, :, 1] * rot[..., 0]], axis=-1)
        raw = start[None] + np.concatenate([np.zeros((1, k, 2)), steps[:-1].cumsum(axis=0)], axis=0)
        pos = 1 - np.abs(np.mod(raw, 2) - 1)  # reflect at the borders
        colour = rng.uniform(30, 230, size=(k, 3))
        return cls(pos, size, colour, [str(x) for x in rng.choice(kinds, size=k)],
                   rng.uniform(0, 180, size=(1, k)) + rng.uniform(-8, 8, size=(1, k)) * np.arange(n)[:, None])


def _draw_movers(img: np.ndarray, movers: Movers, t: int, cam: np.ndarray) -> None:
    h, w = img.shape[:2]
    s = min(h, w)
    for j, kind in enumerate(movers.kind):
        cx, cy = (movers.pos[t, j, 0] - cam[0]) * w, (movers.pos[t, j, 1] - cam[1]) * h
        rad = max(1.0, movers.size[j] * s)
        col = tuple(float(c) for c in movers.colour[j])
        c = (int(round(cx * 16)), int(round(cy * 16)))
        if kind == "dot":
            cv2.circle(img, c, int(rad * 16), col, -1, cv2.LINE_AA, 4)
        elif kind == "box":
            d = int(rad * 16)
            cv2.rectangle(img, (c[0] - d, c[1] - d), (c[0] + d, c[1] + d), col, -1, cv2.LINE_AA, 4)
        else:
            axes = (int(rad * 16), int(rad * 16 * 0.55))
            cv2.ellipse(img, c, axes, float(movers.angle[t, j]), 0, 360, col, -1, cv2.LINE_AA, 4)


def _draw_actor(img: np.ndarray, actor: Actor, t: int, cam: np.ndarray) -> tuple[float, float, float, float] | None:
    """Composite the actor's frame t (2x supersampled coverage); return its normalised box, None when unseen."""
    st = {k: float(v[t]) for k, v in actor.states.items()}
    if st["visible"] < 0.5 or st["alpha"] <= 0:
        return None
    h, w = img.shape[:2]
    rpix = st["r"] * min(h, w)
    reach = rpix * 1.45 * max(st["aspect"], 1 / st["aspect"])
    cx, cy = (st["cx"] - cam[0]) * w, (st["cy"] - cam[1]) * h
    x0, x1 = max(0, int(np.floor(cx - reach))), min(w, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(np.floor(cy - reach))), min(h, int(np.ceil(cy + reach)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    sub = (np.arange(2) + 0.5) / 2
    xs = (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
    dx, dy = (xs[None, :] - cx) / rpix, (ys[:, None] - cy) / rpix
    c, s = np.cos(st["theta"]), np.sin(st["theta"])
    u = (c * dx + s * dy) / st["aspect"]
    v = (-s * dx + c * dy) * st["aspect"]
    inside = _shape_mask(actor.spec.shape, u, v)
    if not inside.any():
        return None
    tex = _texture(actor.spec.texture, u, v)
    hh, ww = y1 - y0, x1 - x0
    cover = inside.reshape(hh, 2, ww, 2).mean(axis=(1, 3))
    tone = tex.reshape(hh, 2, ww, 2).mean(axis=(1, 3))
    colour = actor.colours[0][None, None, :] * (1 - tone[..., None]) + actor.colours[1][None, None, :] * tone[..., None]
    a = (cover * st["alpha"])[..., None]
    patch = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(patch * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)
    rows, cols = np.flatnonzero(cover.max(axis=1) >= 0.5), np.flatnonzero(cover.max(axis=0) >= 0.5)
    if len(rows) == 0:
        return None
    return (x0 + cols[0]) / w, (y0 + rows[0]) / h, (x0 + cols[-1] + 1) / w, (y0 + rows[-1] + 1) / h


@dataclass
class Clutter:
    """Everything in a shot besides its actors: moving distractors, still look-alike decoys, a panning camera."""

    movers: list[Movers]
    decoys: list[Actor]
    camera: np.ndarray  # (n, 2) normalised camera offset per frame


def clutter(rng: np.random.Generator, n: int, specs: list[ClassSpec], bystanders: int = 0,
            decoys: bool = True, pan: bool = True) -> Clutter:
    """Distractors, optional bystander blobs, 0-2 decoys (smaller copies of class objects drifting), camera pan."""
    movers = [Movers.random(rng, n, int(rng.integers(2, 5)), (0.025, 0.055), ("dot", "box", "blob"))]
    if bystanders:
        movers.append(Movers.random(rng, n, bystanders, (0.1, 0.15), ("blob",), speed=(0.015, 0.04)))
    looks = []
    for _ in range(int(rng.choice([0, 1, 1, 2])) if decoys else 0):
        spec = specs[int(rng.integers(0, len(specs)))]
        dx, dy = _drift(rng, n, 0.1)
        states = _states(n, cx=rng.uniform(0.1, 0.9) + dx, cy=rng.uniform(0.1, 0.9) + dy, r=0.15,
                         theta=rng.uniform(0, 2 * np.pi))
        looks.append(Actor.of(spec, states, rng, size=rng.uniform(0.45, 0.7)))
    camera = np.zeros((n, 2))
    if pan:
        ang, amount = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.1)
        camera = amount * (_ramp(n)[:, None] - 0.5) * np.array([np.cos(ang), np.sin(ang)])[None, :]
    return Clutter(movers, looks, camera)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cluttered still background: smooth colour noise, muted rectangles and lines."""
    low = rng.uniform(40, 170, size=(rng.integers(3, 6), rng.integers(3, 6), 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    s = min(h, w)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(s // 10, s // 3), y0 + rng.integers(s // 10, s // 3)
        col = tuple(int(c) for c in rng.uniform(50, 190, size=3))
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), col, -1 if rng.random() < 0.6 else 1)
    for _ in range(rng.integers(2, 5)):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, tuple(int(c) for c in rng.uniform(40, 200, size=3)), 1, cv2.LINE_AA)
    return img


_MARGIN = 0.125  # background border beyond the frame, room for the camera to pan


def render(h: int, w: int, n: int, rng: np.random.Generator, actors: list[Actor],
           scene: Clutter) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, h, w, 3) uint8 RGB and boxes (n, len(actors), 4) normalised x1 y1 x2 y2 (NaN where unseen)."""
    big = background(rng, int(round(h * (1 + 2 * _MARGIN))), int(round(w * (1 + 2 * _MARGIN))))
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    boxes = np.full((n, len(actors), 4), np.nan)
    for t in range(n):
        cam = scene.camera[t]
        shift = np.float32([[1, 0, -(_MARGIN + cam[0]) * w], [0, 1, -(_MARGIN + cam[1]) * h]])
        img = cv2.warpAffine(big, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for m in scene.movers:
            _draw_movers(img, m, t, cam)
        for decoy in scene.decoys:
            _draw_actor(img, decoy, t, cam)
        for j, actor in enumerate(actors):
            box = _draw_actor(img, actor, t, cam)
            if box is not None:
                boxes[t, j] = box
        frames[t] = img
    return frames, boxes
