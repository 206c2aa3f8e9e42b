"""Table 1's verdicts on paired seeds: every condition of a model trains with the same seeds (the same initial
weights, the same target batches in the same order, the same augmentations), so two conditions are compared seed
by seed. A verdict rests on the paired differences: their mean, its 95 % interval by the t distribution, the sign
count, and the smallest difference this many pairs with this spread could show."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's, corrected)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
TEST = ("paired t-interval over training seeds (95 %); each run scored with its last quarter's epochs averaged "
        "(avg.pt: steadier pairs than last.pt, bench/paired_spread.py)")


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with df degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class Paired:
    """Paired differences a - b over seeds."""

    n: int               # pairs (seeds both conditions trained)
    mean: float
    low: float           # 95 % interval of the mean difference
    high: float
    wins: int            # pairs where a beat b
    detectable: float    # the half-width: a mean difference smaller than this cannot leave 0 out of the interval

    @property
    def verdict(self) -> str:
        """'yes' (the interval lies above 0), 'reversed' (below), 'not shown' (it holds 0, or too few pairs)."""
        if self.n < 2:
            return "not shown"
        return "yes" if self.low > 0 else "reversed" if self.high < 0 else "not shown"

    def sentence(self, unit: str = "top-1") -> str:
        """'yes (+0.112 top-1, 95 % interval +0.041 to +0.183, 3 of 3 seeds better; 3 pairs detect ...)'."""
        if self.n < 2:
            return f"not shown (only {self.n} pair)"
        return (f"{self.verdict} ({self.mean:+.3f} {unit}, 95 % interval {self.low:+.3f} to {self.high:+.3f}, "
                f"{self.wins} of {self.n} seeds better; {self.n} pairs detect a difference of "
                f"{self.detectable:.3f} or more)")


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired differences of two conditions' results, seed i of a against seed i of b."""
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, 0, math.inf)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else math.inf
    half = t975(n - 1) * sd / math.sqrt(n)
    return Paired(n, mean, mean - half, mean + half, sum(x > 0 for x in d), half)


def compare(runs: pd.DataFrame, model: str, a: str, b: str, metric: str = "top1") -> Paired:
    """Condition a against condition b for one model, over the seeds both trained."""
    g = runs[runs["model"] == model].pivot_table(index="seed", columns="condition", values=metric)
    if a not in g or b not in g:
        return paired([], [])
    both = g[[a, b]].dropna()
    return paired(both[a].tolist(), both[b].tolist())
