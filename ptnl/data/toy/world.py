"""The toy world: procedurally rendered 64x64 images of patterned shapes, and English captions.

A scene is one to three identical objects (same shape, colour, pattern and size) on a tinted,
shaded background with a few specks of clutter; a swatch is a patch of pattern that fills the
frame (the world's "texture photos", as DTD is to ImageNet); a scatter is a field of many small
plain objects of one shape and colour over the whole frame (its "land-cover tiles", as EuroSAT). Four attribute families describe an
object: shape, colour, pattern, size, plus its count. Nuisances the captions never mention
(position, rotation, exact scale, hue/brightness jitter, pattern period and angle, background,
clutter, pixel noise) make the mapping from pixels to words many-to-one, as in real photos.

Everything is a pure function of an ``np.random.Generator``: `sample_attrs` draws what a picture
shows, `render` draws how it looks, `caption` draws how someone describes it. The caller owns the
generator, so an image is fixed by its (stream, index) seed and nothing touches global RNG state.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64  # a ModifiedResNet downsamples 32x: 64 px still leaves a 2x2 grid for its attention pool

SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "crescent")
PLURALS = {"cross": "crosses"}  # every other shape takes an "s"
# (hue in degrees, saturation range, value range): centres are far apart on the hue circle except
# red/orange/pink and blue/purple, which is where the fine-grained task lives.
COLOURS = {
    "red": (0, (0.75, 1.0), (0.7, 1.0)),
    "orange": (28, (0.8, 1.0), (0.8, 1.0)),
    "yellow": (55, (0.75, 1.0), (0.85, 1.0)),
    "green": (120, (0.6, 1.0), (0.55, 0.9)),
    "cyan": (183, (0.6, 1.0), (0.75, 1.0)),
    "blue": (228, (0.7, 1.0), (0.65, 1.0)),
    "purple": (280, (0.55, 0.9), (0.55, 0.9)),
    "pink": (330, (0.3, 0.5), (0.9, 1.0)),
}
PATTERNS = ("plain", "striped", "dotted", "checkered", "wavy", "zigzag", "grid", "ringed")
SIZES = {"small": (6.0, 8.0), "medium": (9.0, 11.0), "large": (12.5, 15.0)}  # radius in pixels
COUNTS = (1, 2, 3)
COUNT_WORDS = {1: ("a", "one", "a single"), 2: ("two", "a pair of"), 3: ("three",)}

HUE_JITTER = 8.0  # degrees: enough that "red" is a range, not that red and orange overlap
ROTATION_MAX = 25.0  # degrees: objects sit roughly upright, so a square and a diamond stay distinct
SWATCH_RATE = 0.15  # share of pretraining pictures that are texture swatches
SCATTER_RATE = 0.15  # share of pretraining pictures that are scatters
N_SCATTER = (8, 16)  # inclusive range of objects in a scatter
SCATTER_RADIUS = (3.0, 5.0)  # pixels: small enough that a field of them covers the frame
# A downstream dataset's camera (toy world v2, docs/toy-world-v2.md): task pictures, never the
# pretraining ones, are blurred, hazed toward a grey and noisier, as curated datasets are shot
# with other cameras than the web's. Zero-shot transfer pays for the shift; few-shot learning on
# the task's own pictures can recover it.
CAMERA_BLUR = (0.4, 0.9)  # Gaussian sigma, pixels
CAMERA_HAZE = (0.1, 0.3)  # weight of the grey
CAMERA_GREY = (0.3, 0.7)
SENSOR_NOISE = 0.025  # pixel noise of every picture
CAMERA_NOISE = 0.05  # pixel noise of a task picture, instead
COUNT_PROBS = (0.6, 0.2, 0.2)
N_CLUTTER = (0, 5)  # inclusive range of tiny distractor specks per picture


@dataclass(frozen=True)
class Attrs:
    """What a picture shows (the words a caption may use); None means "any" to `sample_attrs`."""

    kind: str = "scene"  # "scene" (objects on a background), "swatch" (pattern fills the frame)
    #                      or "scatter" (many small plain objects over the frame)
    shape: str | None = None
    colour: str | None = None
    pattern: str | None = None
    size: str | None = None
    count: int | None = None


def sample_attrs(
    rng: np.random.Generator, fixed: Attrs | None = None, swatch_rate: float = 0.0, scatter_rate: float = 0.0
) -> Attrs:
    """Fill every attribute that `fixed` leaves None, uniformly (count by COUNT_PROBS)."""
    f = fixed or Attrs()
    u = rng.random()
    kind = "swatch" if u < swatch_rate else ("scatter" if u < swatch_rate + scatter_rate else "scene")
    kind = f.kind if fixed is not None else kind
    # Draw every family even when fixed, so the nuisance draws that follow are aligned across tasks.
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = tuple(COLOURS)[rng.integers(len(COLOURS))]
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    size = tuple(SIZES)[rng.integers(len(SIZES))]
    count = int(rng.choice(COUNTS, p=COUNT_PROBS))
    if kind == "swatch":
        return Attrs("swatch", None, f.colour or colour, f.pattern or pattern, None, None)
    if kind == "scatter":
        return Attrs("scatter", f.shape or shape, f.colour or colour, None, None, None)
    return Attrs(
        "scene", f.shape or shape, f.colour or colour, f.pattern or pattern, f.size or size, f.count or count
    )


# ---------------------------------------------------------------------------------------------
# rendering

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5


def _rgb(colour: str, rng: np.random.Generator) -> np.ndarray:
    hue, (s0, s1), (v0, v1) = COLOURS[colour]
    h = ((hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 360) / 360
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(s0, s1), rng.uniform(v0, v1)), dtype=np.float32)


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the outline, in units of the object radius (negative inside)."""
    r = np.sqrt(u * u + v * v) + 1e-6
    th = np.arctan2(v, u)
    if shape == "circle":
        return r - 1.0
    if shape in ("square", "triangle", "hexagon"):
        n = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        # a regular n-gon, one vertex up; the boundary radius at angle th is cos(pi/n)/cos(phi)
        phi = np.mod(th + np.pi / 2, 2 * np.pi / n) - np.pi / n
        if shape == "square":
            phi = np.mod(th + np.pi / 4, np.pi / 2) - np.pi / 4  # flat side up
        return r * np.cos(phi) / np.cos(np.pi / n) - (0.9 if n == 4 else 1.0)
    if shape == "diamond":  # a rhombus taller than wide, so rotation never turns it into a square
        return np.abs(u) / 0.62 + np.abs(v) - 1.0
    if shape == "star":  # five points, boundary radius linear in angle between tips and notches
        k = np.abs(np.mod(th + np.pi / 2, 2 * np.pi / 5) / (2 * np.pi / 5) * 2 - 1)
        return r - (0.45 + 0.6 * k)
    if shape == "cross":
        a, b = 0.95, 0.32
        return np.minimum(np.maximum(np.abs(u) - a, np.abs(v) - b), np.maximum(np.abs(u) - b, np.abs(v) - a))
    if shape == "crescent":
        d1 = r - 1.0
        d2 = np.sqrt((u - 0.45) ** 2 + (v + 0.15) ** 2) - 0.8
        return np.maximum(d1, -d2)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Where the second tone goes (float in [0, 1]); u, v in pixels, in the pattern's own frame."""
    p = period
    if pattern == "plain":
        return np.zeros_like(u)
    if pattern == "striped":
        return (np.sin(2 * np.pi * u / p) > 0).astype(np.float32)
    if pattern == "dotted":
        du, dv = np.mod(u, p) - p / 2, np.mod(v, p) - p / 2
        return (du * du + dv * dv < (0.3 * p) ** 2).astype(np.float32)
    if pattern == "checkered":
        return (np.mod(np.floor(u / p) + np.floor(v / p), 2) == 1).astype(np.float32)
    if pattern == "wavy":
        return (np.sin(2 * np.pi * (u + 0.35 * p * np.sin(2 * np.pi * v / (2.2 * p))) / p) > 0).astype(
            np.float32
        )
    if pattern == "zigzag":
        tri = np.abs(np.mod(v / p, 1.0) * 2 - 1) * 0.6 * p
        return (np.sin(2 * np.pi * (u + tri) / p) > 0).astype(np.float32)
    if pattern == "grid":
        w = max(1.2, 0.22 * p)
        return ((np.mod(u, p) < w) | (np.mod(v, p) < w)).astype(np.float32)
    if pattern == "ringed":
        return (np.sin(2 * np.pi * np.sqrt(u * u + v * v) / p) > 0).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}; choose one of {PATTERNS}")


def _second_tone(c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Darker or paler version of the same colour: the pattern never changes the colour's name.
    if rng.random() < 0.5:
        return c * rng.uniform(0.3, 0.5)
    t = rng.uniform(0.45, 0.65)
    return c * (1 - t) + t


def _background(rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(0.08, 0.92)
    tint = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.2), 1.0), dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * (_XX - 32) + np.sin(ang) * (_YY - 32)) / 64 * rng.uniform(0, 0.3)
    return np.clip((level + ramp)[..., None] * tint, 0, 1)


def _place(radii: list[float], rng: np.random.Generator) -> list[tuple[float, float]]:
    """Centres inside the frame, non-overlapping when rejection sampling manages it."""
    centres: list[tuple[float, float]] = []
    for rad in radii:
        lo, hi = rad + 1, IMAGE_SIZE - rad - 1
        best = None
        for _ in range(30):
            c = (rng.uniform(lo, hi), rng.uniform(lo, hi))
            gap = min(
                (np.hypot(c[0] - o[0], c[1] - o[1]) - rad - ro for o, ro in zip(centres, radii)), default=1e9
            )
            if best is None or gap > best[0]:
                best = (gap, c)
            if gap > 1.5:
                break
        centres.append(best[1])
    return centres


def render(attrs: Attrs, rng: np.random.Generator, camera: bool = False) -> np.ndarray:
    """One picture as uint8 [64, 64, 3]. All attributes must be set (see `sample_attrs`).

    ``camera=True`` shoots it with a downstream dataset's camera (blur, haze, more noise)."""
    if attrs.kind == "swatch":
        img = _render_swatch(attrs, rng)
    elif attrs.kind == "scene":
        img = _render_scene(attrs, rng)
    elif attrs.kind == "scatter":
        img = _render_scatter(attrs, rng)
    else:
        raise ValueError(f"unknown kind {attrs.kind!r}; use 'scene', 'swatch' or 'scatter'")
    if camera:
        img = _blur(img, rng.uniform(*CAMERA_BLUR))
        haze, grey = rng.uniform(*CAMERA_HAZE), rng.uniform(*CAMERA_GREY)
        img = img * (1 - haze) + grey * haze
    noise = CAMERA_NOISE if camera else SENSOR_NOISE
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an [H, W, 3] float image, edges replicated."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    p = sum(k[i] * p[i : i + img.shape[0]] for i in range(2 * r + 1))
    return sum(k[i] * p[:, i : i + img.shape[1]] for i in range(2 * r + 1))


def _render_swatch(attrs: Attrs, rng: np.random.Generator) -> np.ndarray:
    c1 = _rgb(attrs.colour, rng)
    c2 = _second_tone(c1, rng)
    ang = np.deg2rad(rng.uniform(0, 180))
    cx, cy = rng.uniform(0, IMAGE_SIZE, 2)
    u = np.cos(ang) * (_XX - cx) + np.sin(ang) * (_YY - cy)
    v = -np.sin(ang) * (_XX - cx) + np.cos(ang) * (_YY - cy)
    t = _pattern_mask(attrs.pattern, u, v, rng.uniform(5.0, 10.0))[..., None]
    shade = 1 + ((_XX - 32) * rng.uniform(-1, 1) + (_YY - 32) * rng.uniform(-1, 1))[..., None] / 64 * 0.25
    return (c1 * (1 - t) + c2 * t) * shade


def _render_scene(attrs: Attrs, rng: np.random.Generator) -> np.ndarray:
    img = _background(rng)
    c1 = _rgb(attrs.colour, rng)
    c2 = _second_tone(c1, rng)
    lo, hi = SIZES[attrs.size]
    radii = [rng.uniform(lo, hi) for _ in range(attrs.count)]
    period = rng.uniform(0.32, 0.45) * float(np.mean(radii)) + 1.5  # a few pattern repeats per object
    pat_ang = np.deg2rad(rng.uniform(0, 180))
    for (cx, cy), rad in zip(_place(radii, rng), radii):
        inside = _object_mask(attrs.shape, cx, cy, rad, rng)
        dx, dy = _XX - cx, _YY - cy
        pu = np.cos(pat_ang) * dx + np.sin(pat_ang) * dy
        pv = -np.sin(pat_ang) * dx + np.cos(pat_ang) * dy
        t = _pattern_mask(attrs.pattern, pu, pv, period)[..., None]
        obj = c1 * (1 - t) + c2 * t
        img = img * (1 - inside) + obj * inside
    return _clutter(img, rng)


def _object_mask(shape: str, cx: float, cy: float, rad: float, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 1] coverage of one upright-ish object (1 px antialiased edge)."""
    rot = np.deg2rad(rng.uniform(-ROTATION_MAX, ROTATION_MAX))
    dx, dy = _XX - cx, _YY - cy
    u = (np.cos(rot) * dx + np.sin(rot) * dy) / rad
    v = (-np.sin(rot) * dx + np.cos(rot) * dy) / rad
    return np.clip(0.5 - _shape_sdf(shape, u, v) * rad, 0, 1)[..., None]


def _render_scatter(attrs: Attrs, rng: np.random.Generator) -> np.ndarray:
    img = _background(rng)
    n = int(rng.integers(N_SCATTER[0], N_SCATTER[1] + 1))
    radii = [rng.uniform(*SCATTER_RADIUS) for _ in range(n)]
    for (cx, cy), rad in zip(_place(radii, rng), radii):
        c = _rgb(attrs.colour, rng)  # each object its own shade: a field, not a stamp
        inside = _object_mask(attrs.shape, cx, cy, rad, rng)
        img = img * (1 - inside) + c * inside
    return _clutter(img, rng)


def _clutter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    for _ in range(rng.integers(N_CLUTTER[0], N_CLUTTER[1] + 1)):  # specks no caption mentions
        cx, cy = rng.uniform(0, IMAGE_SIZE, 2)
        rad = rng.uniform(0.8, 2.0)
        speck = np.clip(rad - np.hypot(_XX - cx, _YY - cy) + 0.5, 0, 1)[..., None]
        col = np.array(
            colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 1), rng.uniform(0.2, 1)), dtype=np.float32
        )
        img = img * (1 - speck) + col * speck
    return img


# ---------------------------------------------------------------------------------------------
# language


def plural(shape: str) -> str:
    return PLURALS.get(shape, shape + "s")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(attrs: Attrs, rng: np.random.Generator | None = None, keep=None) -> str:
    """'two small red striped circles'. `keep` (a set of family names) drops the others; with an
    rng, each family is also kept only with some probability, so captions describe partially."""
    keep = set(keep) if keep is not None else {"count", "size", "colour", "pattern", "shape"}
    if rng is not None:  # partial descriptions: people rarely name every attribute
        for fam, p_keep in (("size", 0.5), ("colour", 0.8), ("pattern", 0.7), ("shape", 0.85)):
            if rng.random() > p_keep:
                keep.discard(fam)
    n = attrs.count or 1
    words = []
    if "size" in keep and attrs.size:
        words.append(attrs.size)
    if "colour" in keep:
        words.append(attrs.colour)
    if "pattern" in keep:
        words.append(attrs.pattern)
    noun = attrs.shape if ("shape" in keep and attrs.shape) else None
    if noun is None:
        noun = ("shape", "object")[0 if rng is None else int(rng.integers(2))]
    words.append(noun if n == 1 else (plural(noun) if noun in SHAPES else noun + "s"))
    phrase = " ".join(words)
    if n == 1:
        cw = "a" if rng is None else COUNT_WORDS[1][rng.integers(3)]
        return (article(phrase) if cw == "a" else cw) + " " + phrase
    cw = COUNT_WORDS[n][0] if rng is None else COUNT_WORDS[n][rng.integers(len(COUNT_WORDS[n]))]
    return cw + " " + phrase


SCENE_TEMPLATES = (
    "a photo of {np}.",
    "{np}.",
    "an image of {np}.",
    "a picture of {np}.",
    "a drawing of {np}.",
    "a close-up photo of {np}.",
    "{np} in the picture.",
    "a snapshot of {np}.",
    "a rendering of {np}.",
    "a sketch of {np}.",
)
SWATCH_TEMPLATES = (
    "{pattern} texture.",
    "a {colour} {pattern} texture.",
    "a photo of a {pattern} texture.",
    "a close-up of a {colour} {pattern} pattern.",
    "a {pattern} pattern in {colour}.",
    "{colour} {pattern} fabric.",
    "a {pattern} surface.",
)
RELATION_TEMPLATES = (  # relational phrasings, so attribute words are not tied to one slot
    "{a} {shape} that is {colour}.",
    "{a} {shape} with a {pattern} pattern.",
    "the {shape} is {colour} and {pattern}.",
    "{a} {size} {shape}, {colour} and {pattern}.",
)
MANY_TEMPLATE = "{count} {shapes}, all of them {colour}."
SCATTER_TEMPLATES = (  # the first is toy-scatter's task template
    "a field of {shapes}.",
    "a field of {colour} {shapes}.",
    "many {colour} {shapes}.",
    "lots of small {shapes} scattered around.",
    "{colour} {shapes} everywhere.",
    "a pattern of tiny {shapes}.",
    "a photo of many small {colour} {shapes}.",
)


def caption(attrs: Attrs, rng: np.random.Generator) -> str:
    """One plain-English description of a picture, drawn from varied templates."""
    if attrs.kind == "swatch":
        t = SWATCH_TEMPLATES[rng.integers(len(SWATCH_TEMPLATES))]
        pattern = attrs.pattern if attrs.pattern != "plain" or rng.random() < 0.5 else "solid"
        return t.format(pattern=pattern, colour=attrs.colour)
    if attrs.kind == "scatter":
        t = SCATTER_TEMPLATES[rng.integers(len(SCATTER_TEMPLATES))]
        return t.format(shapes=plural(attrs.shape), colour=attrs.colour)
    if rng.random() < 0.2:
        if attrs.count > 1:
            words = {2: "two", 3: "three"}
            return MANY_TEMPLATE.format(
                count=words[attrs.count], shapes=plural(attrs.shape), colour=attrs.colour
            )
        t = RELATION_TEMPLATES[rng.integers(len(RELATION_TEMPLATES))]
        return t.format(
            a=article(attrs.shape),
            shape=attrs.shape,
            colour=attrs.colour,
            pattern=attrs.pattern,
            size=attrs.size,
        )
    t = SCENE_TEMPLATES[rng.integers(len(SCENE_TEMPLATES))]
    return t.format(np=noun_phrase(attrs, rng))


def image_rng(stream: int, index: int) -> np.random.Generator:
    """The generator for picture `index` of `stream`: independent across streams and indices."""
    return np.random.default_rng([stream, index])
