"""`SparsitySpec`: everything a sparse run decides, as one frozen value, validated once.

The trainer builds it from the `[sparsity]` config section (ramp windows converted to optimizer
steps by `synccp.sparsity.schedule.sparsity_steps`); library users build it directly, or let
`synccp.Sparsifier(model, algorithm=..., density=..., total_steps=...)` build it. Everything not
given takes the paper's default. This module never imports `synccp.config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from synccp.sparsity.algorithms import is_policy_update, regrow_settings
from synccp.sparsity.allocation import ALLOCATIONS
from synccp.sparsity.granularity import Pattern, pattern_for
from synccp.sparsity.registry import Policy, policy_for
from synccp.sparsity.schedule import DEFAULT_RAMP, branch_densities, cosine_drop_fraction

SPARSE_BRANCHES = ("online", "second")


@dataclass(frozen=True, kw_only=True)
class SparsitySpec:
    """One sparse run's settings (densities are fractions *kept*; steps are optimizer steps).

    Fields:
        algorithm: a row of `synccp.sparsity.registry.POLICIES` (dense, static, gmp, sdclr, rigl,
            granet, synccp).
        granularity: a row of `synccp.sparsity.granularity.PATTERNS` (unstructured, nm, block,
            channel); `n`, `m` (N:M, n < m) and `block` ((b_out, b_in) tiles) parameterise it.
            N:M ends at exactly n/m whatever `density` says.
        density: final density d_f in (0, 1] (paper: 0.1, i.e. 90% sparse).
        initial_density: d_i in (0, 1], the density before the ramp (1: start dense).
        density_gap: Δ in [0, 1): SyncCP's second branch keeps min(1, d(t) + Δ); d_f + Δ <= 1.
        allocation: global | uniform | erk, how a density budget is spread over layers.
        score_ema: β in [0, 1): scores are EMA_β(|w|) (0: plain magnitude).
        update_every: k >= 1, mask updates every k optimizer steps.
        total_steps: optimizer steps of the whole run (>= 1; required).
        steps_per_epoch: SDCLR re-prunes every epoch; None: every `update_every` steps.
        ramp_start_step, ramp_end_step: the cubic ramp t_s <= t_e <= total_steps (ramp
            algorithms: gmp, granet, synccp); ramp_end_step None: 75% of `total_steps`.
        drop_fraction: drop-and-grow's initial fraction in [0, 1) (None: RigL 0.3, GraNet 0.5).
        regrow_end_step: last drop-and-grow step (None: RigL 75%, GraNet 100% of training).
        sparse_branch: online | second, the branch SDCLR prunes.
        seed: seeds the random initial masks (static, rigl, granet).
    """

    algorithm: str = "synccp"
    granularity: str = "unstructured"
    n: int = 2
    m: int = 4
    block: tuple[int, int] = (4, 4)
    density: float = 0.1
    initial_density: float = 1.0
    density_gap: float = 0.1
    allocation: str = "global"
    score_ema: float = 0.0
    update_every: int = 50
    total_steps: int
    steps_per_epoch: int | None = None
    ramp_start_step: int = 0
    ramp_end_step: int | None = None
    drop_fraction: float | None = None
    regrow_end_step: int | None = None
    sparse_branch: str = "second"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "block", tuple(self.block))
        policy_for(self.algorithm)  # ValueError naming sparsity.algorithm
        pattern = self.pattern  # ValueError naming sparsity.granularity / n / m / block
        _in_range("sparsity.density", self.density, closed_low=False, closed_high=True)
        _in_range("sparsity.initial_density", self.initial_density, closed_low=False,
                  closed_high=True)
        _in_range("sparsity.density_gap", self.density_gap, closed_low=True, closed_high=False)
        _in_range("sparsity.score_ema", self.score_ema, closed_low=True, closed_high=False)
        if self.drop_fraction is not None:
            _in_range("sparsity.drop_fraction", self.drop_fraction, closed_low=True,
                      closed_high=False)
        _choice("sparsity.allocation", self.allocation, ALLOCATIONS)
        _choice("sparsity.sparse_branch", self.sparse_branch, SPARSE_BRANCHES)
        for key, value in (("sparsity.update_every", self.update_every),
                           ("total_steps", self.total_steps),
                           ("steps_per_epoch", self.steps_per_epoch),
                           ("seed", self.seed)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < (0 if key == "seed" else 1)):
                raise ValueError(f"{key} must be an integer >= {0 if key == 'seed' else 1}, "
                                 f"got {value!r}")
        start, end = self.ramp
        if not 0 <= start <= end <= self.total_steps:
            raise ValueError(f"need 0 <= ramp_start_step <= ramp_end_step <= total_steps (the "
                             f"density ramp, sparsity.start_epoch/end_epoch), got "
                             f"ramp_start_step={start}, ramp_end_step={end}, "
                             f"total_steps={self.total_steps}")
        if self.regrow_end_step is not None and not 0 <= self.regrow_end_step <= self.total_steps:
            raise ValueError(f"sparsity.regrow_end must end drop-and-grow inside training, got "
                             f"step {self.regrow_end_step} of {self.total_steps}")
        final = pattern.final_density(self.density)
        if self.policy.uses_gap and final + self.density_gap > 1.0 + 1e-9:
            raise ValueError(f"sparsity.density_gap={self.density_gap} with a final density of "
                             f"{final:g} asks the second branch for "
                             f"{final + self.density_gap:g} > 1; use at most {1 - final:g} "
                             f"(= 1 - density: a dense second branch)")

    @property
    def policy(self) -> Policy:
        """The algorithm's registry row."""
        return policy_for(self.algorithm)

    @property
    def pattern(self) -> Pattern:
        """The granularity's row (`granularity` with `n`, `m`, `block`)."""
        return pattern_for(self.granularity, n=self.n, m=self.m, block=self.block)

    @property
    def ramp(self) -> tuple[int, int]:
        """(t_s, t_e) in optimizer steps."""
        if self.ramp_end_step is None:
            return self.ramp_start_step, round(DEFAULT_RAMP[1] * self.total_steps)
        return self.ramp_start_step, self.ramp_end_step

    @property
    def epoch_steps(self) -> int:
        """SDCLR's re-pruning period: `steps_per_epoch`, else `update_every`."""
        return self.update_every if self.steps_per_epoch is None else self.steps_per_epoch

    def regrow_window(self) -> tuple[float, int]:
        """(initial drop fraction, last drop-and-grow step): the spec's values, else the
        algorithm's own (RigL: 0.3 until 75% of training; GraNet: 0.5 until the end); (0.0, 0)
        for algorithms without regrowth."""
        return regrow_settings(self.policy, drop_fraction=self.drop_fraction,
                               regrow_end_step=self.regrow_end_step, total_steps=self.total_steps)

    def drop_fraction_at(self, step: int) -> float:
        """RigL/GraNet's drop-and-grow fraction at update `step`: the cosine decay from the
        initial fraction to the row's floor at the end of the regrowth window; 0.0 for
        algorithms without regrowth."""
        regrow = self.policy.regrow
        if regrow is None:
            return 0.0
        initial, end = self.regrow_window()
        return cosine_drop_fraction(step, initial=initial, final=regrow.floor, end=end)

    def densities(self, step: int) -> tuple[float, float]:
        """Target total density (online, second branch) in force after optimizer step `step`
        (`synccp.sparsity.schedule.branch_densities` with this spec)."""
        start, end = self.ramp
        return branch_densities(step, algorithm=self.algorithm, density=self.density,
                                initial_density=self.initial_density, density_gap=self.density_gap,
                                start_step=start, end_step=end, sparse_branch=self.sparse_branch,
                                granularity=self.granularity, n=self.n, m=self.m,
                                update_every=self.update_every)

    def is_update(self, step: int) -> bool:
        """Whether masks change after optimizer step `step` (>= 1; step 0 is the initial mask)."""
        start, end = self.ramp
        return is_policy_update(self.policy, step, start_step=start, end_step=end,
                                update_every=self.update_every, steps_per_epoch=self.epoch_steps,
                                total_steps=self.total_steps,
                                regrow_end_step=self.regrow_window()[1])


def resolve_spec(spec: SparsitySpec | None, settings: dict) -> SparsitySpec:
    """`spec`, or a `SparsitySpec` of the keyword `settings` (not both)."""
    if spec is not None:
        if settings:
            raise TypeError(f"pass a SparsitySpec or its fields as keywords, not both; got spec "
                            f"and {sorted(settings)}")
        return spec
    fields = set(SparsitySpec.__dataclass_fields__)
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(f"unknown Sparsifier keyword(s) {unknown}; SparsitySpec fields are "
                        f"{', '.join(sorted(fields))}")
    if "total_steps" not in settings:
        raise TypeError("Sparsifier needs total_steps=<optimizer steps of the run> (the "
                        "schedule's length)")
    return SparsitySpec(**settings)


def _in_range(key: str, value: float, *, closed_low: bool, closed_high: bool) -> None:
    above = value >= 0.0 if closed_low else value > 0.0
    below = value <= 1.0 if closed_high else value < 1.0
    if not (above and below):
        interval = f"{'[' if closed_low else '('}0.0, 1.0{']' if closed_high else ')'}"
        raise ValueError(f"{key} must be in {interval}, got {value!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
