"""Labelled image grids (the X/Y/Z plot's): cells in rows and columns, the column labels above,
the row labels on the left, drawn with PIL's own font."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def _font(cell_w: int):
    return ImageFont.load_default(size=max(10, min(32, cell_w // 10)))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return (lines + [line]) if line else lines or [""]


def labelled_grid(cells: list[list[Image.Image]], col_labels: list[str], row_labels: list[str],
                  margin: int = 0, title: str = "") -> Image.Image:
    """A grid of `cells` (rows of images) with labels; empty label lists draw no labels. Cells of
    other sizes are centred in a box the size of the largest."""
    rows, cols = len(cells), max(len(r) for r in cells)
    cw = max(im.width for r in cells for im in r)
    ch = max(im.height for r in cells for im in r)
    font = _font(cw)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.size * 1.25)
    top_lines = [_wrap(probe, t, font, cw) for t in col_labels] if any(col_labels) else []
    top = (max(len(x) for x in top_lines) * line_h + line_h // 2) if top_lines else 0
    title_lines = _wrap(probe, title, font, cols * cw) if title else []
    top += len(title_lines) * line_h
    left = 0
    if any(row_labels):
        left = min(max(int(max(probe.textlength(t, font=font) for t in row_labels)) + line_h, line_h * 3), cw * 2)
    width = left + cols * cw + (cols - 1) * margin
    height = top + rows * ch + (rows - 1) * margin
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for i, line in enumerate(title_lines):
        draw.text((left + (width - left) / 2, i * line_h + line_h / 2), line, fill="black", font=font, anchor="mm")
    for c, lines in enumerate(top_lines):
        x = left + c * (cw + margin) + cw / 2
        for i, line in enumerate(lines):
            y = len(title_lines) * line_h + i * line_h + line_h / 2
            draw.text((x, y), line, fill="black", font=font, anchor="mm")
    for r, row in enumerate(cells):
        y0 = top + r * (ch + margin)
        if left and r < len(row_labels):
            lines = _wrap(draw, row_labels[r], font, left - line_h // 2)
            for i, line in enumerate(lines):
                y = y0 + ch / 2 + (i - (len(lines) - 1) / 2) * line_h
                draw.text((left / 2, y), line, fill="black", font=font, anchor="mm")
        for c, im in enumerate(row):
            x0 = left + c * (cw + margin)
            grid.paste(im.convert("RGB"), (x0 + (cw - im.width) // 2, y0 + (ch - im.height) // 2))
    return grid


__all__ = ["labelled_grid"]
