"""Small server-rendered SVG charts (no JavaScript, no CDN): bars and stacked time series."""

from __future__ import annotations

from html import escape as _escape

from .visible import visible


def escape(text: str) -> str:
    return _escape(visible(text))


PALETTE = {"vendor": "#c0392b", "provider": "#2e86c1", "own": "#27ae60", "local": "#95a5a6", "unknown": "#f39c12"}


def bars(items: list[tuple[str, int]], *, width: int = 560, unit: str = "") -> str:
    if not items:
        return '<p class="muted">no data in this period</p>'
    top = max(v for _, v in items) or 1
    row_h, label_w = 22, 210
    height = row_h * len(items) + 4
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(items):
        y = i * row_h + 2
        w = max(1, int((width - label_w - 90) * value / top))
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(label[:32])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" class="bar"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 15}" class="val">{value:,}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_series(buckets: list[int], series: dict[str, dict[int, int]], *, width: int = 760, height: int = 200,
                   label=lambda b: str(b)) -> str:
    if not buckets:
        return '<p class="muted">no data in this period</p>'
    totals = [sum(s.get(b, 0) for s in series.values()) for b in buckets]
    top = max(totals) or 1
    plot_h = height - 40
    bw = max(2, (width - 50) // len(buckets))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="4" y="12" class="val">{top:,}</text>']
    for i, b in enumerate(buckets):
        x = 45 + i * bw
        y = plot_h + 16
        for name, values in series.items():
            v = values.get(b, 0)
            if not v:
                continue
            h = max(1, int(plot_h * v / top))
            y -= h
            parts.append(f'<rect x="{x}" y="{y}" width="{bw - 1}" height="{h}" fill="{PALETTE.get(name, "#888")}">'
                         f'<title>{escape(name)}: {v:,} at {escape(label(b))}</title></rect>')
    parts.append(f'<text x="45" y="{height - 6}" class="lbl">{escape(label(buckets[0]))}</text>')
    parts.append(f'<text x="{width - 4}" y="{height - 6}" text-anchor="end" class="lbl">{escape(label(buckets[-1]))}</text>')
    lx = 120
    for name in series:
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{PALETTE.get(name, "#888")}"/>'
                     f'<text x="{lx + 14}" y="{height - 6}" class="lbl">{escape(name)}</text>')
        lx += 90
    parts.append("</svg>")
    return "".join(parts)
