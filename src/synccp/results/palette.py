"""One label, colour and marker per algorithm (its registry row), used by every figure.

Variants of one algorithm in an ablation (a swept Δ, EMA, precision) keep its hue, lightened per
variant, and differ by line style; granularities differ by marker fill. Colours are the
colour-blind-safe Okabe–Ito set (Okabe & Ito 2008) plus black for the dense reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.colors import to_hex, to_rgb

from synccp.sparsity.registry import POLICIES


@dataclass(frozen=True)
class Style:
    label: str   # name in legends
    color: str   # hex
    marker: str  # matplotlib marker


STYLES: dict[str, Style] = {name: Style(row.label, row.color, row.marker)  # the registry's rows
                             for name, row in POLICIES.items()}
UNKNOWN = Style("other", "#56B4E9", "X")
FILLS = {"dense": "full", "unstructured": "full", "nm": "none", "block": "top", "channel": "left"}
LINESTYLES = ("-", "--", "-.", ":", (0, (6, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 1)))
LIGHTEN = (0.0, 0.45, 0.25, 0.6, 0.15, 0.7)  # share of white blended in, per variant
REFERENCE = {"dense": dict(color=STYLES["dense"].color, linestyle="--", linewidth=1.2),
             "raw pixels": dict(color="#777777", linestyle=":", linewidth=1.6)}


def style(algorithm: str) -> Style:
    return STYLES.get(algorithm, UNKNOWN)


def algorithm_of(series: str) -> str:
    """`synccp` of a series label such as `synccp, gap Δ=0.3`."""
    return series.split(",")[0].strip()


def display(series: str) -> str:
    """`SyncCP, gap Δ=0.3` for the series label `synccp, gap Δ=0.3` (the table's label)."""
    algorithm = algorithm_of(series)
    return style(algorithm).label + series[len(algorithm):] if algorithm in STYLES else series


def lighten(color: str, amount: float) -> str:
    """`color` blended with white by `amount` in [0, 1): same hue, lighter."""
    return to_hex(tuple(c + (1.0 - c) * amount for c in to_rgb(color)))


def series_styles(labels: list[str]) -> dict[str, dict]:
    """Colour, marker and line style per series label: the algorithm's colour and marker; its
    n-th variant lightened and with the n-th line style."""
    variants: dict[str, int] = {}
    out = {}
    for label in labels:
        algorithm = algorithm_of(label)
        index = 0
        if label != algorithm:  # the plain algorithm keeps the table's colour exactly
            index = variants[algorithm] = variants.get(algorithm, 0) + 1
        base = style(algorithm)
        out[label] = {"color": lighten(base.color, LIGHTEN[index % len(LIGHTEN)]),
                      "marker": base.marker, "linestyle": LINESTYLES[index % len(LINESTYLES)]}
    return out
