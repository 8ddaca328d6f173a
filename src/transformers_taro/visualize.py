"""Where the router applied guidance: tokens coloured by alpha, in the terminal (rich), HTML and PNG."""

from __future__ import annotations

import html
from collections.abc import Sequence

from rich.text import Text

# One colour scale everywhere: white at alpha = 0, deep orange at alpha = alpha_max.
_HIGH = (230, 90, 20)


def _rgb(alpha: float, alpha_max: float) -> tuple[int, int, int]:
    w = 0.0 if alpha_max <= 0 else max(0.0, min(1.0, alpha / alpha_max))
    return tuple(round(255 + (h - 255) * w) for h in _HIGH)  # type: ignore[return-value]


def token_strings(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """Each token as the text it adds (decoding the prefix incrementally keeps multi-byte characters whole)."""
    out, previous = [], ""
    for i in range(len(token_ids)):
        text = tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True)
        out.append(text[len(previous) :])
        previous = text
    return out


def alpha_text(tokens: Sequence[str], alphas: Sequence[float], alpha_max: float) -> Text:
    """A rich `Text` with each token's background shaded by its alpha."""
    text = Text()
    for tok, a in zip(tokens, alphas):
        r, g, b = _rgb(a, alpha_max)
        text.append(tok, style=f"black on rgb({r},{g},{b})")
    return text


def alpha_html(sections: Sequence[tuple[str, Sequence[str], Sequence[float]]], alpha_max: float,
               title: str = "TARo: guidance weight per token") -> str:
    """A standalone HTML page: one block per (heading, tokens, alphas), tokens shaded by alpha (hover shows it)."""
    blocks = []
    for heading, tokens, alphas in sections:
        spans = "".join(
            f'<span title="alpha={a:.2f}" style="background:rgb{_rgb(a, alpha_max)}">{html.escape(t)}</span>'
            for t, a in zip(tokens, alphas)
        )
        blocks.append(f"<h3>{html.escape(heading)}</h3><pre>{spans}</pre>")
    legend = "".join(
        f'<span style="background:rgb{_rgb(alpha_max * k / 4, alpha_max)}">&nbsp;{alpha_max * k / 4:.2f}&nbsp;</span>'
        for k in range(5)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "pre{white-space:pre-wrap;font-size:15px;line-height:1.6}</style></head>"
        f"<body><h2>{html.escape(title)}</h2><p>alpha: {legend}</p>{''.join(blocks)}</body></html>"
    )


def alpha_png(sections: Sequence[tuple[str, Sequence[str], Sequence[float]]], path: str, alpha_max: float,
              width_chars: int = 90) -> None:
    """The same picture as `alpha_html`, drawn with matplotlib into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: list[list[tuple[str, float]]] = []
    for heading, tokens, alphas in sections:
        lines.append([(heading, -1.0)])
        current: list[tuple[str, float]] = []
        used = 0
        for tok, a in zip(tokens, alphas):
            for k, piece in enumerate(tok.split("\n")):
                if k > 0 or used + len(piece) > width_chars:
                    lines.append(current)
                    current, used = [], 0
                if piece:
                    current.append((piece, a))
                    used += len(piece)
        lines.append(current)
        lines.append([])
    height = 0.22 * len(lines) + 0.5
    fig = plt.figure(figsize=(width_chars * 0.085 + 0.5, height))
    char_w, line_h = 1.0 / (width_chars + 4), 1.0 / (len(lines) + 1)
    for row, line in enumerate(lines):
        x = char_w
        y = 1 - (row + 1) * line_h
        for piece, a in line:
            if a < 0:
                fig.text(x, y, piece, fontsize=10, weight="bold", family="monospace", va="center")
                continue
            color = tuple(c / 255 for c in _rgb(a, alpha_max))
            fig.text(x, y, piece, fontsize=9, family="monospace", va="center",
                     bbox=dict(facecolor=color, edgecolor="none", pad=0.6))
            x += char_w * len(piece)
    fig.savefig(path, dpi=110)
    plt.close(fig)
