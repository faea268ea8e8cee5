"""The paper's claims as paired comparisons of a study's runs, each decided by one written rule.

A comparison sets algorithm a against b for one method and granularity, at the same settings
outside `sparsity.*` (one recipe per method), paired by seed: d_s = accuracy(a, s) − accuracy(b, s).
Runs of one seed share initial weights, data order and augmentations, so d_s is far less noisy
than a difference of means (tables.with_dense_differences).

The rule (docs/results.md, "How a verdict is reached"): a two-sided paired t-test over the seeds
(results/paired_t.py) at α = 0.05, with at least 3 seeds; below 3 the comparison is *waiting*.
p < α gives "a ahead" or "b ahead" by the sign of the mean; otherwise *no difference resolved*.
The kNN probe decides; the linear probe is tested and shown beside it, because on this CPU
protocol it moves up to 0.7 points between machines and its paired spread is 2-5× kNN's. No
correction for the number of comparisons: at α = 0.05 about one in twenty comparisons of equal
algorithms comes out "ahead".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from synccp.results.paired_t import paired_t
from synccp.results.tables import format_mean_std, markdown_table, outside_sparsity
from synccp.specs import SparsitySettings

ALPHA = 0.05
MIN_SEEDS = 3
DEFAULT_GAP = SparsitySettings().density_gap  # the gap of every SyncCP cell but the Δ ablation's
DEFAULT_DENSITY = SparsitySettings().density
UNSTRUCTURED = ("unstructured", DEFAULT_DENSITY)
NM_2_4 = ("nm 2:4", 0.5)
PROBES = ("knn", "linear")


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: an algorithm, and for SyncCP its density gap Δ."""

    algorithm: str
    gap: float | None = None

    @property
    def label(self) -> str:
        return self.algorithm if self.gap is None else f"{self.algorithm} Δ {self.gap:g}"

    def matches(self, row: dict) -> bool:
        if row["algorithm"] != self.algorithm:
            return False
        gap = DEFAULT_GAP if self.gap is None and row["density_gap"] is not None else self.gap
        return gap is None or (row["density_gap"] is not None
                               and abs(float(row["density_gap"]) - gap) < 1e-9)


@dataclass(frozen=True)
class Comparison:
    """a − b for one method, granularity and recipe, seed by seed."""

    method: str
    granularity: str
    a: Arm
    b: Arm
    seeds: tuple[int, ...]
    knn: tuple[float, ...]
    linear: tuple[float, ...]

    def test(self, probe: str = "knn") -> tuple[float, float] | None:
        """(t, p) of the probe's paired differences; None below MIN_SEEDS."""
        values = getattr(self, probe)
        return paired_t(values) if len(values) >= MIN_SEEDS else None

    def outcome(self, probe: str = "knn") -> str:
        """"a", "b" (that side is ahead), "tie" (no difference resolved) or "waiting"."""
        result = self.test(probe)
        if result is None:
            return "waiting"
        t, p = result
        return "tie" if p >= ALPHA else ("a" if t > 0 else "b")

    def outcome_text(self, probe: str = "knn") -> str:
        outcome = self.outcome(probe)
        return {"a": f"{self.a.label} ahead", "b": f"{self.b.label} ahead",
                "tie": "no difference resolved",
                "waiting": f"waiting ({len(self.seeds)} of {MIN_SEEDS} seeds)"}[outcome]


def _arm_rows(rows: list[dict], method: str, granularity: tuple[str, float], arm: Arm) -> dict:
    """{(recipe, seed): row} of the arm's runs (dense runs have granularity `dense`)."""
    label, density = ("dense", 1.0) if arm.algorithm == "dense" else granularity
    return {(outside_sparsity(r), r["seed"]): r for r in rows
            if r["method"] == method and r["granularity"] == label
            and abs(float(r["density"]) - density) < 1e-9 and arm.matches(r)}


def compare(rows: list[dict], method: str, granularity: tuple[str, float], a: Arm,
            b: Arm) -> list[Comparison]:
    """One Comparison per recipe of `method` that has runs of both arms (none if no seed pairs)."""
    a_rows, b_rows = (_arm_rows(rows, method, granularity, arm) for arm in (a, b))
    by_recipe: dict[str, list[tuple[int, dict, dict]]] = {}
    for (recipe, seed), row in sorted(a_rows.items(), key=lambda item: str(item[0])):
        if (recipe, seed) in b_rows:
            by_recipe.setdefault(recipe, []).append((seed, row, b_rows[recipe, seed]))
    return [Comparison(method, granularity[0], a, b, tuple(s for s, _, _ in pairs),
                       *(tuple(float(ra[f"{p}_top1"]) - float(rb[f"{p}_top1"])
                               for _, ra, rb in pairs) for p in PROBES))
            for pairs in by_recipe.values()]


@dataclass(frozen=True)
class Pair:
    """One comparison a claim asks for; `decides`: whether its outcome enters the verdict."""

    method: str
    granularity: tuple[str, float]
    a: Arm
    b: Arm
    decides: bool = True


@dataclass(frozen=True)
class Claim:
    """A claim: the comparisons it asks for, a verdict per (method, granularity) group from the
    kNN outcomes of its deciding comparisons (`group`), and the verdict over groups (`combine`)."""

    key: str
    statement: str
    rule: str
    pairs: tuple[Pair, ...]
    group: Callable[[list[str]], str]
    combine: Callable[[list[str]], str]


OUTCOME_VERDICT = {"a": "confirmed", "b": "refuted", "tie": "not resolved", "waiting": "waiting"}


def every_group(verdicts: list[str]) -> str:
    """Refuted if a group is, waiting while one waits, confirmed if all are, else not resolved."""
    if "refuted" in verdicts:
        return "refuted"
    if "waiting" in verdicts:
        return "waiting"
    return "confirmed" if all(v == "confirmed" for v in verdicts) else "not resolved"


def _a_ahead_of_all(outcomes: list[str]) -> str:
    """Confirmed if a is ahead in every deciding comparison, refuted if b is ahead in one."""
    return every_group([OUTCOME_VERDICT[o] for o in outcomes])


def _b_ahead_of_all(outcomes: list[str]) -> str:
    """Confirmed if b is ahead in every deciding comparison, refuted if a is ahead in one."""
    return _a_ahead_of_all([{"a": "b", "b": "a"}.get(o, o) for o in outcomes])


def some_group(verdicts: list[str]) -> str:
    """Confirmed once a group is, waiting while one waits, refuted if all are, else not resolved:
    `every_group` with confirmed and refuted swapped on the way in and out."""
    swap = {"confirmed": "refuted", "refuted": "confirmed"}
    verdict = every_group([swap.get(v, v) for v in verdicts])
    return swap.get(verdict, verdict)


CLAIM_A_METHODS = ("simclr", "mocov2", "barlow", "byol")
SPARSE_METHODS = ("simclr", "byol")  # the methods with every sparse baseline in the study
BASELINES = ("gmp", "granet", "rigl", "static")  # algorithms whose product is a sparse encoder
SYNCCP, DENSE, SDCLR = Arm("synccp"), Arm("dense"), Arm("sdclr")
GAP_ZERO = Arm("gmp")  # SyncCP at Δ 0 is GMP, bit for bit (tests/test_gap_zero.py)

CLAIMS = (
    Claim("a", "SDCLR's sparse–dense asymmetry does not carry over to every SSL framework",
          "SDCLR (its dense encoder, as its paper) against dense, per method: confirmed once one "
          "method has SDCLR behind dense, refuted if SDCLR is ahead in all four; the SyncCP lines "
          "are shown beside, not deciding",
          tuple(Pair(m, UNSTRUCTURED, a, b, decides=a == SDCLR)
                for m in CLAIM_A_METHODS
                for a, b in ((SDCLR, DENSE), (SYNCCP, DENSE), (SYNCCP, SDCLR))),
          _b_ahead_of_all, some_group),
    Claim("b", "prune-and-regrow (GraNet, RigL) hurts SSL against pruning without regrowth",
          "per method (SimCLR, BYOL) at 90%: confirmed if SyncCP is ahead of both GraNet and "
          "RigL, refuted if either is ahead of SyncCP; GMP − GraNet (the regrowth alone) is "
          "shown beside, not deciding",
          tuple(Pair(m, UNSTRUCTURED, a, Arm(b), decides=a == SYNCCP) for m in SPARSE_METHODS
                for a, b in ((SYNCCP, "granet"), (SYNCCP, "rigl"), (Arm("gmp"), "granet"))),
          _a_ahead_of_all, every_group),
    Claim("c", "SyncCP beats the state-of-the-art sparse training algorithms",
          "per method (SimCLR, BYOL) and granularity (90% unstructured, 2:4): confirmed if "
          "SyncCP is ahead of every algorithm whose product is a sparse encoder (GMP, GraNet, "
          "RigL, static; SDCLR exports its dense encoder), refuted if any is ahead of SyncCP",
          tuple(Pair(m, g, SYNCCP, Arm(b)) for m in SPARSE_METHODS
                for g in (UNSTRUCTURED, NM_2_4) for b in BASELINES),
          _a_ahead_of_all, every_group),
    Claim("Δ", "a density gap between the branches helps (the Δ ablation)",
          f"per method (SimCLR, BYOL): confirmed if SyncCP at the default Δ {DEFAULT_GAP:g} is "
          "ahead of Δ 0, refuted if behind; Δ 0.2 and 0.3 are shown beside, not deciding. Δ 0 "
          "is the GMP cell: SyncCP at Δ 0 trains GMP's network bit for bit "
          "(tests/test_gap_zero.py), so the study runs it once",
          tuple(Pair(m, UNSTRUCTURED, Arm("synccp", g), GAP_ZERO, decides=g == DEFAULT_GAP)
                for m in SPARSE_METHODS for g in (DEFAULT_GAP, 0.2, 0.3)),
          _a_ahead_of_all, every_group),
)


def claim_comparisons(rows: list[dict], claim: Claim) -> list[tuple[Pair, list[Comparison]]]:
    """Each pair of the claim with its comparisons (one per recipe; none while no seed pairs)."""
    return [(pair, compare(rows, pair.method, pair.granularity, pair.a, pair.b))
            for pair in claim.pairs]


def group_verdicts(claim: Claim, found: list[tuple[Pair, list[Comparison]]]) -> dict[str, str]:
    """{"simclr unstructured": verdict, ...} over the claim's groups; a deciding pair without
    runs counts as waiting."""
    outcomes: dict[str, list[str]] = {}
    for pair, comparisons in found:
        if pair.decides:
            outcomes.setdefault(f"{pair.method} {pair.granularity[0]}", []).extend(
                [c.outcome() for c in comparisons] or ["waiting"])
    return {group: claim.group(values) for group, values in outcomes.items()}


def _line(c: Comparison) -> list[str]:
    cells = [c.method, c.granularity, f"{c.a.label} − {c.b.label}", str(len(c.seeds))]
    for probe in PROBES:
        values, result = getattr(c, probe), c.test(probe)
        cells += [", ".join(f"{v:+.2f}" for v in values),
                  format_mean_std(values, "{:+.2f}"),
                  "-" if result is None else f"{result[1]:.3f}", c.outcome_text(probe)]
    return cells


HEAD = ["method", "granularity", "a − b", "n", "kNN per seed", "kNN mean ± std", "kNN p",
        "kNN outcome", "linear per seed", "linear mean ± std", "linear p", "linear outcome"]


def claims_lines(rows: list[dict]) -> list[str]:
    """The report's "Claims" section (empty when no claim has a single pair of runs)."""
    sections = []
    for claim in CLAIMS:
        found = claim_comparisons(rows, claim)
        comparisons = [c for _, cs in found for c in cs]
        if not comparisons:
            continue
        groups = group_verdicts(claim, found)
        sections += [f"### Claim ({claim.key}): {claim.statement} — "
                     f"**{claim.combine(list(groups.values()))}**", "",
                     f"Rule: {claim.rule}.", "",
                     "By group: " + "; ".join(f"{g}: {v}" for g, v in groups.items()) + ".", "",
                     markdown_table(HEAD, [_line(c) for c in comparisons]), ""]
    if not sections:
        return []
    return ["## Claims, paired by seed", "",
            f"Each line is a − b, seed by seed, between runs of one recipe. Outcome: a two-sided "
            f"paired t-test over the seeds at α = {ALPHA:g} (at least {MIN_SEEDS} seeds, else "
            "waiting); the kNN probe decides the verdicts, the linear probe is shown beside it. "
            "No correction for the number of comparisons. Verdicts: confirmed, refuted, not "
            "resolved, or waiting (a deciding comparison lacks runs or seeds).", "", *sections]
