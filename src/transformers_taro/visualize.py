"""Where guidance was applied: tokens coloured by alpha, in the terminal (rich), HTML and PNG, with a legend.

With several reward models an answer is shown once per reward model (`model_sections`), each row coloured by that
model's weight on one shared scale: which specialist guided each token reads off from row to row.

The colour scale is fitted to the alphas shown (`AlphaScale.fit`), not to the router's whole range: a router that
keeps alpha within 0.07-0.28 would otherwise paint every token the same pale shade.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from transformers import PreTrainedTokenizerBase

from .extras import require
from .generation import Generation

# A sequential palette, light to dark. Terminal colours are the xterm-256 entries nearest to these, so a terminal
# without truecolor shows the same five steps instead of rounding every pale shade to white.
_PALETTE = ((255, 255, 215), (255, 215, 95), (255, 135, 0), (215, 0, 0), (135, 0, 0))
_TERMINAL = ("color(230)", "color(221)", "color(208)", "color(160)", "color(88)")
_Section = tuple[str, Sequence[str], Sequence[float]]


@dataclass(frozen=True)
class AlphaScale:
    """Maps alpha in `[low, high]` to a colour; one scale per picture so its legend is true for every token."""

    low: float
    high: float

    @classmethod
    def fit(cls, alphas: Sequence[Sequence[float]]) -> AlphaScale:
        """The range of the alphas to show (a fixed alpha gives a one-value scale)."""
        values = [a for row in alphas for a in row]
        if not values:
            return cls(0.0, 1.0)
        return cls(min(values), max(values))

    def position(self, alpha: float) -> float:
        """Where alpha lies on the scale, in [0, 1] (0.5 when every alpha is the same)."""
        if self.high - self.low < 1e-9:
            return 0.5
        return max(0.0, min(1.0, (alpha - self.low) / (self.high - self.low)))

    def rgb(self, alpha: float) -> tuple[int, int, int]:
        x = self.position(alpha) * (len(_PALETTE) - 1)
        i = min(int(x), len(_PALETTE) - 2)
        w = x - i
        return tuple(round(a + (b - a) * w) for a, b in zip(_PALETTE[i], _PALETTE[i + 1]))  # type: ignore[return-value]

    def level(self, alpha: float) -> int:
        """One of five steps, for terminals."""
        return min(int(self.position(alpha) * len(_TERMINAL)), len(_TERMINAL) - 1)

    def ticks(self, n: int = 5) -> list[float]:
        if self.high - self.low < 1e-9:
            return [self.low]
        return [self.low + (self.high - self.low) * k / (n - 1) for k in range(n)]


def model_sections(heading: str, tokens: Sequence[str], generation: Generation) -> list[_Section]:
    """An answer as picture sections: one (heading, tokens, alphas), or one per reward model of a guide of several,
    headed `weight of NAME: heading` (the name first: a long heading is cut at the picture's edge)."""
    if generation.names is None:
        return [(heading, tokens, generation.alphas)]
    return [(f"weight of {name}: {heading}", tokens, generation.alphas_of(name)) for name in generation.names]


def _terminal_style(scale: AlphaScale, alpha: float) -> str:
    level = scale.level(alpha)
    return f"{'white' if level >= 3 else 'black'} on {_TERMINAL[level]}"


def token_strings(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int]) -> list[str]:
    """Each token as the text it adds (decoding the prefix incrementally keeps multi-byte characters whole)."""
    out, previous = [], ""
    for i in range(len(token_ids)):
        text = tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True)
        out.append(text[len(previous) :])
        previous = text
    return out


def alpha_text(tokens: Sequence[str], alphas: Sequence[float], scale: AlphaScale) -> Text:
    """A rich `Text` with each token's background shaded by its alpha (five steps of `scale`)."""
    text = Text()
    for tok, a in zip(tokens, alphas):
        text.append(tok, style=_terminal_style(scale, a))
    return text


def alpha_legend(scale: AlphaScale) -> Text:
    """The terminal legend: what alpha each shade stands for."""
    text = Text("alpha: ")
    if scale.high - scale.low < 1e-9:
        return text.append(f" {scale.low:.2f} on every token ", style=_terminal_style(scale, scale.low))
    step = (scale.high - scale.low) / len(_TERMINAL)
    for k in range(len(_TERMINAL)):
        lo = scale.low + k * step
        text.append(f" {lo:.2f}-{lo + step:.2f} ", style=_terminal_style(scale, lo + step / 2))
    return text


def alpha_html(sections: Sequence[_Section], scale: AlphaScale, title: str = "TARo: guidance weight per token") -> str:
    """A standalone HTML page: one block per (heading, tokens, alphas), tokens shaded by alpha (hover shows it)."""
    blocks = []
    for heading, tokens, alphas in sections:
        spans = "".join(
            f'<span title="alpha={a:.2f}" style="background:rgb{scale.rgb(a)}">{html.escape(t)}</span>'
            for t, a in zip(tokens, alphas)
        )
        blocks.append(f"<h3>{html.escape(heading)}</h3><pre>{spans}</pre>")
    legend = "".join(f'<span style="background:rgb{scale.rgb(a)}">&nbsp;{a:.2f}&nbsp;</span>' for a in scale.ticks())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "pre{white-space:pre-wrap;font-size:15px;line-height:1.6}</style></head>"
        f"<body><h2>{html.escape(title)}</h2><p>alpha (scale fitted to these answers): {legend}</p>"
        f"{''.join(blocks)}</body></html>"
    )


def alpha_png(sections: Sequence[_Section], path: str, scale: AlphaScale, width_chars: int = 90) -> None:
    """The same picture as `alpha_html`, drawn with matplotlib into a PNG, with a colour bar."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    lines: list[list[tuple[str, float]]] = []
    for heading, tokens, alphas in sections:
        lines.append([(heading, float("nan"))])
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
    height = 0.22 * len(lines) + 1.2
    fig = plt.figure(figsize=(width_chars * 0.085 + 0.5, height))
    char_w, line_h = 1.0 / (width_chars + 4), (1.0 - 0.9 / height) / (len(lines) + 1)
    for row, line in enumerate(lines):
        x = char_w
        y = 1 - (row + 1) * line_h
        for piece, a in line:
            if a != a:  # NaN marks a heading
                fig.text(x, y, piece, fontsize=10, weight="bold", family="monospace", va="center")
                continue
            color = tuple(c / 255 for c in scale.rgb(a))
            fig.text(
                x,
                y,
                piece,
                fontsize=9,
                family="monospace",
                va="center",
                bbox=dict(facecolor=color, edgecolor="none", pad=0.6),
            )
            x += char_w * len(piece)
    cmap = LinearSegmentedColormap.from_list("alpha", [tuple(c / 255 for c in rgb) for rgb in _PALETTE])
    low, high = (scale.low, scale.high) if scale.high > scale.low else (scale.low - 0.5, scale.low + 0.5)
    bar_axes = fig.add_axes((0.15, 0.25 / height, 0.7, 0.18 / height))
    bar = fig.colorbar(ScalarMappable(Normalize(low, high), cmap), cax=bar_axes, orientation="horizontal")
    bar.set_label("alpha (guidance weight) per token", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
