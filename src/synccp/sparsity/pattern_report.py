"""Whether masks follow their granularity exactly, per layer and in one line (`synccp inspect`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synccp.sparsity.granularity import Pattern, pattern_for

if TYPE_CHECKING:
    from torch import Tensor


def pattern_report(name: str, mask: Tensor, granularity: str | Pattern, *, n: int = 2, m: int = 4,
                   block: tuple[int, int] = (4, 4)) -> dict:
    """Check that `mask` follows a granularity exactly (for `synccp inspect`).

    `granularity` is a name (with `n`, `m`, `block`) or a `Pattern`; the fields are the row's
    `check`. Unfit shapes report `fits=False`, and `valid` says whether the layer was left dense.
    """
    pattern = granularity if isinstance(granularity, Pattern) else pattern_for(
        granularity, n=n, m=m, block=block)
    report = {"name": name, "pattern": pattern.describe(), "density": float(mask.float().mean()),
              "fits": True, "valid": True, "violations": 0, "units": 0}
    reason = pattern.unfit_reason(tuple(mask.shape))
    if reason is not None:
        report.update(fits=False, valid=bool(mask.all()), reason=reason)
        return report
    report.update(pattern.check(mask))
    return report


def pattern_summary(reports: list[dict]) -> str:
    """One line such as "2:4 valid in 19/19 layers (1 unfit layer left dense)"."""
    if not reports:
        return "no prunable layers"
    fitting = [r for r in reports if r["fits"]]
    valid = sum(r["valid"] for r in fitting)
    text = f"{reports[0]['pattern']} valid in {valid}/{len(fitting)} layers"
    unfit = len(reports) - len(fitting)
    return text + (f" ({unfit} unfit layer{'s' * (unfit > 1)} left dense)" if unfit else "")
