"""Generate Switchboard's icon set into ``resources/icons/``.

The mark is a rounded square "patch panel": four jacks in a 2x2 grid, two
of them joined by a thick S-shaped patch cord -- an old telephone
switchboard routing a call, which is what the app does with work (office
hardware <-> cloud).

Outputs:
    app.png                 256x256 application icon
    app.ico                 multi-size Windows icon (16..256)
    tray-{idle,busy,error}.png      64x64 tray icons
    tray-{idle,busy,error}-32.png   32x32 tray icons (for 1x displays)

Tray states are told apart mainly by colour and by a filled badge, never by
thin lines, so they survive being shown at 16-22 px on light or dark bars:
    idle  - slate-grey mark, no badge
    busy  - blue mark with the cord and spare jacks lit amber (a
            switchboard's lamps light while a call is being answered)
    error - grey mark with a red badge carrying a white "!"

Every image is drawn at 4x its final size and downsampled with a Lanczos
filter, which gives clean anti-aliased edges without any vector renderer.
Each size is drawn separately (rather than shrinking the 256 px image) so
that strokes can be thickened at small sizes, where a proportional 1 px line
would blur into nothing.

Run:  python packaging/make_icons.py      (needs Pillow)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SUPERSAMPLE = 4
OUT_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"
ICO_SIZES = [16, 24, 32, 48, 64, 128, 256]

RGBA = tuple[int, int, int, int]


def hex_rgba(value: str, alpha: int = 255) -> RGBA:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), alpha)


@dataclass(frozen=True)
class Palette:
    bg_top: RGBA  # vertical gradient of the rounded square
    bg_bottom: RGBA
    cord: RGBA
    jack: RGBA  # the two jacks the cord is plugged into
    spare: RGBA  # the two unused jacks: translucent normally, lit when busy
    hole: RGBA  # socket hole in the middle of a jack


WHITE = hex_rgba("#ffffff")

# Brand colours: the app icon and the "busy" tray state share the blue.
BRAND = Palette(
    bg_top=hex_rgba("#3b82f6"),
    bg_bottom=hex_rgba("#1d4ed8"),
    cord=WHITE,
    jack=WHITE,
    spare=hex_rgba("#ffffff", 110),
    hole=hex_rgba("#1e3a8a"),
)
# Neutral slate for idle/error: mid-grey so it shows on both light and dark
# tray bars without an outline.
SLATE = Palette(
    bg_top=hex_rgba("#7b8798"),
    bg_bottom=hex_rgba("#556070"),
    cord=WHITE,
    jack=WHITE,
    spare=hex_rgba("#ffffff", 110),
    hole=hex_rgba("#3b4452"),
)
BUSY = Palette(
    bg_top=BRAND.bg_top,
    bg_bottom=BRAND.bg_bottom,
    cord=hex_rgba("#fbbf24"),
    jack=WHITE,
    spare=hex_rgba("#fbbf24"),
    hole=BRAND.hole,
)
RED = hex_rgba("#dc2626")
# A white ring separates the badge from the part of the mark it overlaps.
BADGE_RING = hex_rgba("#ffffff")


def gradient_square(size: int, top: RGBA, bottom: RGBA) -> Image.Image:
    """A size x size image filled with a vertical linear gradient."""
    column = Image.new("RGBA", (1, size))
    for y in range(size):
        t = y / max(size - 1, 1)
        column.putpixel(
            (0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        )
    return column.resize((size, size), Image.Resampling.NEAREST)


def bezier(p0, p1, p2, p3, steps: int = 64) -> list[tuple[float, float]]:
    """Points along a cubic Bezier curve (Pillow has no curve primitive)."""
    pts = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        pts.append(
            (
                u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0],
                u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1],
            )
        )
    return pts


def disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def draw_mark(
    size: int, pal: Palette, *, full_bleed: bool = False, bold: bool = False
) -> Image.Image:
    """Draw the mark at ``size`` px (rendered internally at SUPERSAMPLE x).

    ``full_bleed`` drops the outer margin; tray icons use every pixel they
    are given, while the app icon keeps a small margin like other app icons.
    ``bold`` thickens strokes; it is forced on below 24 px, and tray icons
    always use it because the desktop shrinks them to 16-22 px itself.
    """
    s = size * SUPERSAMPLE
    small = bold or size <= 24

    # Geometry in unit coordinates, scaled by s.
    margin = 0.0 if full_bleed else 0.04
    radius = 0.22  # corner radius of the rounded square
    jack_r = 0.125 if small else 0.105
    hole_r = jack_r * (0.38 if small else 0.45)
    cord_w = 0.13 if small else 0.10
    lo, hi = 0.30, 0.70  # jack grid positions

    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))

    # Rounded-square body: paint a gradient through a rounded-rect mask.
    lo_px, hi_px = round(margin * s), round((1 - margin) * s) - 1
    body_box = [lo_px, lo_px, hi_px, hi_px]
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle(body_box, radius=radius * s, fill=255)
    img.paste(gradient_square(s, pal.bg_top, pal.bg_bottom), (0, 0), mask)

    # Spare jacks go on a separate layer so their translucency composites
    # over the body instead of replacing its pixels.
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    disc(d, hi * s, lo * s, jack_r * s * 0.8, pal.spare)
    disc(d, lo * s, hi * s, jack_r * s * 0.8, pal.spare)
    img.alpha_composite(layer)

    d = ImageDraw.Draw(img)
    # Patch cord: an S-curve from the top-left jack to the bottom-right one,
    # the way a cord drapes between two jacks; a straight diagonal would
    # read as a generic "link" glyph.
    start, end = (lo * s, lo * s), (hi * s, hi * s)
    # Stroked by stamping closely spaced discs: ImageDraw.line with many
    # short wide segments leaves notches at the joints.
    pts = bezier(start, (lo * s, 0.80 * s), (hi * s, 0.20 * s), end, steps=400)
    for x, y in pts:
        disc(d, x, y, cord_w * s / 2, pal.cord)

    # Occupied jacks on top of the cord ends: a plug sitting in a socket.
    for cx, cy in (start, end):
        disc(d, cx, cy, jack_r * s, pal.jack)
        disc(d, cx, cy, hole_r * s, pal.hole)

    return img.resize((size, size), Image.Resampling.LANCZOS)


def draw_badge(size: int, fill: RGBA, *, exclaim: bool) -> Image.Image:
    """A filled round badge for the bottom-right corner of a tray icon.

    It hides one jack, but the other jack and most of the cord stay visible,
    so the icon still reads as Switchboard.
    """
    s = size * SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # Big enough to read at 16 px: about half the icon.
    r = 0.28 * s
    ring = 0.055 * s
    cx = cy = s - r - ring
    disc(d, cx, cy, r + ring, BADGE_RING)
    disc(d, cx, cy, r, fill)
    if exclaim:
        # "!" as a rounded bar plus a dot; widths scale with the badge.
        bw = r * 0.36
        d.rounded_rectangle(
            (cx - bw / 2, cy - r * 0.62, cx + bw / 2, cy + r * 0.18),
            radius=bw / 2,
            fill=WHITE,
        )
        disc(d, cx, cy + r * 0.50, bw * 0.58, WHITE)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def tray_icon(state: str, size: int) -> Image.Image:
    if state == "idle":
        return draw_mark(size, SLATE, full_bleed=True, bold=True)
    if state == "busy":
        # No badge: blue instead of grey plus a lit (amber) cord and lamps
        # is already unmistakable, and keeps the whole mark visible.
        return draw_mark(size, BUSY, full_bleed=True, bold=True)
    if state == "error":
        img = draw_mark(size, SLATE, full_bleed=True, bold=True)
        img.alpha_composite(draw_badge(size, RED, exclaim=True))
        return img
    raise ValueError(state)


TRAY_STATES = ("idle", "busy", "error")


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    draw_mark(256, BRAND).save(OUT_DIR / "app.png", optimize=True)

    # Pillow's ICO writer only downsizes the image it is given, which would
    # lose the small-size stroke tweaks; hand it each size pre-drawn instead
    # (append_images entries are used for the sizes they match).
    frames = [draw_mark(n, BRAND) for n in ICO_SIZES]
    frames[-1].save(
        OUT_DIR / "app.ico",
        sizes=[(n, n) for n in ICO_SIZES],
        append_images=frames[:-1],
    )

    for state in TRAY_STATES:
        tray_icon(state, 64).save(OUT_DIR / f"tray-{state}.png", optimize=True)
        tray_icon(state, 32).save(OUT_DIR / f"tray-{state}-32.png", optimize=True)

    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.relative_to(OUT_DIR.parent.parent)}  {path.stat().st_size} B")


if __name__ == "__main__":
    main()
