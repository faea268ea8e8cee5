"""The two-sided paired t-test the claims' verdicts use (results/claims.py): pure Python, no SciPy.

For differences d_1..d_n of paired runs, t = mean(d) / (std(d) / √n) with n − 1 degrees of
freedom, and the two-sided p-value is P(|T| ≥ |t|) = I_{ν/(ν+t²)}(ν/2, 1/2), the regularized
incomplete beta function at ν = n − 1. The continued fraction below is the classical one for
I_x(a, b) (Abramowitz & Stegun 26.5.8), evaluated with the modified Lentz method.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

_TINY = 1e-300


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (valid, and fast, for x < (a + 1) / (a + b + 2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return fraction


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"regularized_beta: x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t_two_sided_p: df must be ≥ 1, got {df}")
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def paired_t(differences: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of the paired differences (at least 2). Differences that are all equal
    give t = ±∞ and p = 0 when nonzero, t = 0 and p = 1 when all zero."""
    n = len(differences)
    if n < 2:
        raise ValueError(f"paired_t: needs at least 2 paired differences, got {n}")
    mean, std = statistics.fmean(differences), statistics.stdev(differences)
    if std == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (std / math.sqrt(n))
    return t, t_two_sided_p(t, n - 1)
