"""Draws the MMKD method figure: `figs/mmkd_method.svg` and `figs/mmkd_method.png`.

    python figs/make_method_figure.py

One scene (boxes, text, arrows in a 1800 x 1200 canvas) is written twice: as SVG text and as a PNG
drawn with PIL at twice the size and downsampled, so lines come out smooth. Only PIL is needed; the
text uses DejaVu Sans when it is installed (it has the Greek letters and subscripts the formulas need).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw, ImageFont

W, H = 1800, 1200
INK = "#1a202c"
TEACHER = ("#dce9f8", "#2b6cb0")  # (fill, stroke)
STUDENT = ("#fde6d2", "#c05621")
OUTPUT = ("#eef5e6", "#4a7a1f")
HIDDEN = ("#f0ebfa", "#6b46c1")
MASKED, VISIBLE = "#b9c0cb", ("#e07a5f", "#3d8eb9", "#81b29a", "#f2cc8f")

# The four MMKD objectives: (left, top, height) of the box, its colour, title and text.
OBJECTIVES = (
    ((436, 360, 236), OUTPUT[1], "MM-hint  (weight γ)", [
        "score each token by Σ |fₜ| over channels; keep the top-K (m)",
        "student: zero the other rows, then MLP g: Cₛ → 2Cₛ → Cₜ",
        "teacher: zero the other rows",
        "L_hint = MSE(g(fₛ ⊙ m), fₜ ⊙ m) · P / K",
    ]),
    ((436, 608, 228), OUTPUT[1], "MM-relation  (weight α)", [
        "kept tokens of the whole batch (n rows), raw fₛ and fₜ",
        "cosine similarities Mₛ, Mₜ (n × n), diagonal −1000",
        "pₜ = softmax(Mₜ / τₜ),  log pₛ = log_softmax(Mₛ / τₛ)",
        "L_rel = KL(pₜ ‖ pₛ) / (B·K)",
    ]),
    ((1116, 360, 236), HIDDEN[1], "MM-global  (weight β·β₁)", [
        "a = softmax(A / τ) over all P keys (temporally global)",
        "top-k keep per row, renormalise; h = a·V, heads merged",
        "Linear alignment: student Cₛ → Cₜ, teacher Cₜ → Cₜ",
        "L_global = MSE(hₛ, hₜ)",
    ]),
    ((1116, 608, 228), HIDDEN[1], "MM-local  (weight β·β₂)", [
        "per temporal slice t: softmax(A / τ) over its S keys",
        "top-k keep, renormalise; h = aₜ·Vₜ → [B, P·T′, H·d]",
        "Linear alignment on each side (own modules)",
        "L_local = MSE(hₛ, hₜ)",
    ]),
)  # fmt: skip


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    radius: float = 12
    width: float = 2


@dataclass(frozen=True)
class Text:
    """`y` is the baseline; `anchor` is "start" (left edge at x) or "middle" (centred on x)."""

    x: float
    y: float
    text: str
    size: int = 18
    bold: bool = False
    anchor: str = "start"
    color: str = INK


@dataclass(frozen=True)
class Arrow:
    points: tuple[tuple[float, float], ...]
    color: str
    width: float = 3


Item = Box | Text | Arrow


@cache
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:  # no DejaVu on this machine: Pillow's bundled font (may lack some symbols)
        return ImageFont.load_default(size)


def text_block(box: Box, title: str, rows: list[str], pad: float = 18) -> list[Item]:
    """A bold title and rows of text inside `box`; fails if a line would cross the box's edge."""
    items: list[Item] = [box, Text(box.x + pad, box.y + 34, title, size=22, bold=True, color=box.stroke)]
    for i, row in enumerate(rows):
        items.append(Text(box.x + pad, box.y + 76 + 38 * i, row))
    for item in items[1:]:
        width = font(item.size, item.bold).getlength(item.text)
        assert width <= box.w - 2 * pad, f"text wider than its box ({width:.0f} px): {item.text!r}"
    return items


def clip(x0: float, y0: float) -> list[Item]:
    """Four frames, 6 x 6 patches each; the same 4 patches are visible in every frame (tube mask)."""
    cell, frames, step = 30, 4, 26
    visible = {(1, 1): 0, (2, 4): 1, (4, 2): 2, (4, 4): 3}
    items: list[Item] = []
    for f in reversed(range(frames)):
        fx, fy = x0 + step * f, y0 - step * f
        for r in range(6):
            for c in range(6):
                color = VISIBLE[visible[r, c]] if (r, c) in visible else MASKED
                items.append(
                    Box(fx + c * cell, fy + r * cell, cell, cell, color, "#ffffff", radius=0, width=1)
                )
        items.append(Box(fx, fy, 6 * cell, 6 * cell, "none", "#4a5568", radius=0, width=2))
    return items


def scene() -> list[Item]:
    items: list[Item] = [
        Text(W / 2, 48, "MMKD: masked knowledge distillation for masked video modeling", 30, True, "middle")
    ]

    # input clip and its two paths into the encoders
    items += clip(62, 470)
    caption = [
        "16 frames × 224², tube mask 0.9:",
        "the same patches are hidden in",
        "every frame, so the P = T′·S",
        "visible tokens form [T′, S]",
    ]
    items += [Text(205, 720 + 28 * i, line, 17, anchor="middle") for i, line in enumerate(caption)]
    items.append(Text(205, 360, "masked clip", 22, True, "middle"))
    items.append(Arrow(((205, 328), (205, 150), (416, 150)), TEACHER[1]))
    items.append(Arrow(((205, 835), (205, 990), (416, 990)), STUDENT[1]))
    items.append(Text(310, 138, "visible tokens", 17, anchor="middle", color=TEACHER[1]))
    items.append(Text(310, 978, "same tokens", 17, anchor="middle", color=STUDENT[1]))

    # encoders
    teacher = Box(420, 90, 1340, 120, *TEACHER)
    student = Box(420, 930, 1340, 120, *STUDENT)
    items += [teacher, student]
    items.append(
        Text(440, 136, "Teacher: VideoMAE ViT-B (pre-trained) — frozen, eval(), no gradients", 24, True)
    )
    items.append(
        Text(
            440,
            180,
            "runs on the visible tokens only; MMKD reads its last block: output f (no final LayerNorm), A, V",
        )
    )
    items.append(
        Text(
            440,
            976,
            "Student: ViT-S (or ViT-B) encoder, trained from scratch with the alignment heads",
            24,
            True,
        )
    )
    items.append(
        Text(
            440, 1020, "same masked clip; the alignment heads (MLP g, Linears) are dropped before fine-tuning"
        )
    )

    # the two levels of distillation, each fed from above (teacher) and below (student)
    out_panel = Box(420, 300, 660, 550, *OUTPUT, radius=16)
    hid_panel = Box(1100, 300, 660, 550, *HIDDEN, radius=16)
    items += [out_panel, hid_panel]
    items.append(Text(750, 340, "Output level: last-block features", 22, True, "middle", OUTPUT[1]))
    items.append(Text(1430, 340, "Hidden level: last-block attention", 22, True, "middle", HIDDEN[1]))
    for x, top, bottom in (
        (750, "fₜ  [B, P, Cₜ]", "fₛ  [B, P, Cₛ]"),
        (1430, "Aₜ [B, H, P, P],  Vₜ [B, H, P, d]", "Aₛ, Vₛ (same head dim d)"),
    ):
        items.append(Arrow(((x, 212), (x, 296)), TEACHER[1]))
        items.append(Arrow(((x, 928), (x, 854)), STUDENT[1]))
        items.append(Text(x + 14, 262, top, 17, color=TEACHER[1]))
        items.append(Text(x + 14, 900, bottom, 17, color=STUDENT[1]))

    for (x, y, h), stroke, title, rows in OBJECTIVES:
        items += text_block(Box(x, y, 628, h, "#ffffff", stroke), title, rows)

    # the objective
    items.append(Box(40, 1085, 1720, 92, "#f7fafc", INK, radius=14))
    items.append(
        Text(W / 2, 1124, "L = γ·L_hint + β·(β₁·L_global + β₂·L_local) + α·L_rel", 26, True, "middle")
    )
    items.append(
        Text(
            W / 2,
            1160,
            "Kinetics-400 recipes: ViT-S γ 0.1, β₁ 0.1, β₂ 3 · ViT-B γ 0.2, β₁ 3, β₂ 1 · β 1, α 0.1, k = K = 10, τ = 1",
            17,
            anchor="middle",
        )
    )
    return items


def _head(points: tuple[tuple[float, float], ...], size: float = 14) -> list[tuple[float, float]]:
    """The triangle at the end of an axis-aligned polyline."""
    (x0, y0), (x1, y1) = points[-2], points[-1]
    dx, dy = (x1 > x0) - (x1 < x0), (y1 > y0) - (y1 < y0)
    bx, by = x1 - dx * size, y1 - dy * size
    return [(x1, y1), (bx - dy * size / 2, by + dx * size / 2), (bx + dy * size / 2, by - dx * size / 2)]


def to_svg(items: list[Item]) -> str:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="DejaVu Sans, Verdana, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
    ]
    for it in items:
        if isinstance(it, Box):
            out.append(
                f'<rect x="{it.x}" y="{it.y}" width="{it.w}" height="{it.h}" rx="{it.radius}" '
                f'fill="{it.fill}" stroke="{it.stroke}" stroke-width="{it.width}"/>'
            )
        elif isinstance(it, Text):
            weight = ' font-weight="bold"' if it.bold else ""
            out.append(
                f'<text x="{it.x}" y="{it.y}" font-size="{it.size}" text-anchor="{it.anchor}" '
                f'fill="{it.color}"{weight}>{escape(it.text)}</text>'
            )
        else:
            line = " ".join(f"{x},{y}" for x, y in it.points[:-1]) + " {},{}".format(*_shorten(it.points))
            head = " ".join(f"{x:g},{y:g}" for x, y in _head(it.points))
            out.append(
                f'<polyline points="{line}" fill="none" stroke="{it.color}" stroke-width="{it.width}"/>'
            )
            out.append(f'<polygon points="{head}" fill="{it.color}"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _shorten(points: tuple[tuple[float, float], ...], by: float = 10) -> tuple[float, float]:
    """The last point pulled back under the arrow head, so the line does not poke through its tip."""
    (x0, y0), (x1, y1) = points[-2], points[-1]
    return x1 - by * ((x1 > x0) - (x1 < x0)), y1 - by * ((y1 > y0) - (y1 < y0))


def to_png(items: list[Item], scale: int = 2) -> Image.Image:
    img = Image.new("RGB", (W * scale, H * scale), "#ffffff")
    draw = ImageDraw.Draw(img)

    def s(*values: float) -> list[float]:
        return [v * scale for v in values]

    for it in items:
        if isinstance(it, Box):
            fill = None if it.fill == "none" else it.fill
            xy = s(it.x, it.y, it.x + it.w, it.y + it.h)
            draw.rounded_rectangle(
                xy, it.radius * scale, fill=fill, outline=it.stroke, width=round(it.width * scale)
            )
        elif isinstance(it, Text):
            anchor = "ms" if it.anchor == "middle" else "ls"
            draw.text(
                s(it.x, it.y), it.text, fill=it.color, font=font(it.size * scale, it.bold), anchor=anchor
            )
        else:
            points = [*it.points[:-1], _shorten(it.points)]
            draw.line(
                [tuple(s(*p)) for p in points], fill=it.color, width=round(it.width * scale), joint="curve"
            )
            draw.polygon([tuple(s(*p)) for p in _head(it.points)], fill=it.color)
    return img.resize((W, H), Image.Resampling.LANCZOS)


def main() -> None:
    here = Path(__file__).resolve().parent
    items = scene()
    (here / "mmkd_method.svg").write_text(to_svg(items), encoding="utf-8")
    to_png(items).save(here / "mmkd_method.png", optimize=True)
    print(f"wrote {here / 'mmkd_method.svg'} and {here / 'mmkd_method.png'}")


if __name__ == "__main__":
    main()
