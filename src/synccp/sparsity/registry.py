"""The algorithm registry: one frozen row per sparsity algorithm, holding everything about it.

A row says how masks start (`init`), when they change (`cadence`), whether they are re-selected
by score (`reselect`) and only shrink (`shrink_only`), whether a drop-and-grow step follows
(`regrow`), the branches' target densities (`targets`), how the second branch's mask relates to
the online one (`second`, `nested`), whether pruned entries are zeroed in storage, and how the
algorithm is named, drawn and costed in reports. Every consumer (config choices, the schedule,
the Sparsifier, the cost model, tables, plots) reads these rows; adding an algorithm is adding
a row. The papers behind each row are cited in `synccp.sparsity.algorithms`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Regrow:
    """Drop-and-grow of a cosine-decayed fraction by dense gradient (RigL; GraNet's regeneration).

    The fraction decays from `drop_fraction` (unless the spec's `drop_fraction` sets it) to
    `floor` over [0, `end` × training] (unless `regrow_end_step` sets it); per layer, `ceil` or
    floor of fraction × active units are dropped by magnitude and as many grown by |dense
    gradient|. Updates every `update_every` steps from `from_ramp_start` (GraNet: from its
    pruning start) or from step 0 (RigL) until `end`.
    """

    drop_fraction: float
    floor: float
    end: float
    ceil: bool
    from_ramp_start: bool


RIGL = Regrow(drop_fraction=0.3, floor=0.0, end=0.75, ceil=False, from_ramp_start=False)
GRANET = Regrow(drop_fraction=0.5, floor=0.005, end=1.0, ceil=True, from_ramp_start=True)
TARGETS = ("dense", "final", "one_branch", "ramp", "ramp_gap")


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Everything about one sparsity algorithm (see the module docstring)."""

    name: str
    init: str          # "dense" | "magnitude" (of the initial weights) | "random" (seeded, ERK)
    cadence: str       # "never" | "ramp" (update_every within the ramp) | "epoch" | "regrow"
    reselect: bool     # at updates, keep the top target density of the branch's scores
    shrink_only: bool  # re-selection only among currently active units: no weight comes back
    regrow: Regrow | None  # then drop-and-grow (cadence "regrow": until Regrow.end of training)
    targets: str       # branch densities: "dense" (1, 1); "final" (d_f, d_f); "one_branch" (d_f on
    #                    `sparse_branch`, 1 on the other); "ramp" (d(t), d(t)); "ramp_gap"
    #                    (d(t), min(1, d(t) + Δ))
    second: str        # "same": the second branch uses the online mask; "own": its own mask
    nested: bool       # the second mask is forced to contain the online mask (both kinds of method)
    zero_pruned: bool = True  # False: masks act in the forward only; every entry keeps training
    branch_norms: bool = False  # shared encoder: the pruned branch has its own BatchNorm (SDCLR)
    label: str         # name in legends and tables
    color: str         # hex colour in every figure (Okabe–Ito, black for dense)
    marker: str        # matplotlib marker
    wgrad_rule: str    # what the cost model charges for the weight gradient, in words

    @property
    def has_ramp(self) -> bool:
        """Masks follow the density ramp (`ramp_start_step` / `ramp_end_step`)."""
        return self.reselect and self.cadence in ("ramp", "regrow")

    @property
    def dense_gradients(self) -> bool:
        """Update steps need the dense weight gradient (growth by |gradient|: RigL, GraNet)."""
        return self.regrow is not None

    @property
    def uses_gap(self) -> bool:
        """The density gap Δ sets the second branch's density (SyncCP)."""
        return self.targets == "ramp_gap"

    @property
    def uses_sparse_branch(self) -> bool:
        """`sparse_branch` chooses which branch is pruned (SDCLR)."""
        return self.targets == "one_branch"

    @property
    def uses_scores(self) -> bool:
        """Masks are chosen from scores after step 0 (`score_ema` matters)."""
        return self.cadence != "never"


_ROWS = (
    Policy(name="dense", init="dense", cadence="never", reselect=False, shrink_only=False,
           regrow=None, targets="dense", second="same", nested=False, label="dense",
           color="#000000", marker="*", wgrad_rule="dense: no mask"),
    Policy(name="static", init="random", cadence="never", reselect=False, shrink_only=False,
           regrow=None, targets="final", second="same", nested=False, label="static (ERK)",
           color="#999999", marker="v",
           wgrad_rule="sparse: fixed random masks, pruned weights never return"),
    Policy(name="gmp", init="magnitude", cadence="ramp", reselect=True, shrink_only=True,
           regrow=None, targets="ramp", second="same", nested=False, label="GMP", color="#E69F00",
           marker="s", wgrad_rule="sparse: magnitude pruning without regrowth needs no gradient "
                                  "of pruned weights"),
    Policy(name="sdclr", init="magnitude", cadence="epoch", reselect=True, shrink_only=False,
           regrow=None, targets="one_branch", second="own", nested=False, zero_pruned=False,
           branch_norms=True, label="SDCLR", color="#CC79A7", marker="D",
           wgrad_rule="sparse in the pruned branch (magnitude re-pruning); the dense branch is "
                      "dense"),
    Policy(name="rigl", init="random", cadence="regrow", reselect=False, shrink_only=False,
           regrow=RIGL, targets="final", second="same", nested=False, label="RigL",
           color="#D55E00", marker="^",
           wgrad_rule="sparse, but dense at every mask-update step (growth by dense-gradient "
                      "magnitude)"),
    Policy(name="granet", init="random", cadence="regrow", reselect=True, shrink_only=True,
           regrow=GRANET, targets="ramp", second="same", nested=False, label="GraNet",
           color="#009E73", marker="P",
           wgrad_rule="sparse, but dense at every mask-update step (regrowth by "
                      "dense-gradient magnitude)"),
    Policy(name="synccp", init="magnitude", cadence="ramp", reselect=True, shrink_only=True,
           regrow=None, targets="ramp_gap", second="own", nested=True, label="SyncCP",
           color="#0072B2", marker="o", wgrad_rule="sparse: scores are EMA(|w|), no regrowth"),
)
POLICIES: dict[str, Policy] = {row.name: row for row in _ROWS}
ALGORITHMS = tuple(POLICIES)  # in report order
assert all(row.targets in TARGETS for row in _ROWS)


def policy_for(algorithm: str) -> Policy:
    """The registry row of `algorithm`; ValueError naming `sparsity.algorithm` otherwise."""
    if algorithm not in POLICIES:
        raise ValueError(f"sparsity.algorithm must be one of {', '.join(POLICIES)}, "
                         f"got {algorithm!r}")
    return POLICIES[algorithm]
