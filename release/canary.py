"""Is the canary at least as good as the stable version on live traffic? A test, not a glance.

Both versions answer disjoint requests at the same time (the server's
sticky split), and feedback labels some of them. Their live AUCs are two
independent estimates, each with DeLong's standard error
(`monitoring.live_metrics`), so their difference has standard error
sqrt(se_c^2 + se_s^2); accuracy is compared as two proportions.

- Too few labelled examples for either version (`min_labelled`, and
  `live_metrics.MIN_PER_CLASS` of each class for the AUC): wait.
- The canary is worse beyond chance on AUC or accuracy (one-sided, each
  at `alpha` / 2): roll it back.
- The canary is not worse by more than `margin` (the one-sided
  1 - `alpha` lower bound of each difference above -margin): promote.
- Otherwise: wait for more feedback.

Promotion still needs an approval (the registry's rule); a rollback of the
canary does not, since it only returns traffic to the approved version.

What the test assumes and the traffic may not give: independent examples
(a sticky caller sends many, which narrows the intervals), and one look at
the data (each `evaluate` looks again; a schedule that evaluates hourly
should ask for a larger `min_labelled` or a smaller `alpha`). Requests that
pinned a version by label or number count for that version too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # the CLI's parser reads Settings' defaults without loading scipy and scikit-learn
    from monitoring.live_metrics import LiveMetrics

PROMOTE, ROLLBACK, WAIT = 'promote', 'rollback', 'wait'


@dataclasses.dataclass(frozen=True)
class Settings:
    min_labelled: int = 200
    alpha: float = 0.05
    # How much worse than stable (AUC, and accuracy) the canary may be and still be promoted.
    margin: float = 0.02

    def __post_init__(self):
        if self.min_labelled < 1:
            raise ValueError('--min-labelled must be at least 1')
        if not 0 < self.alpha < 1:
            raise ValueError(f'--alpha must be between 0 and 1, not {self.alpha:g}')
        if not 0 <= self.margin < 1:
            raise ValueError(f'--margin must be at least 0 and below 1, not {self.margin:g}')


@dataclasses.dataclass(frozen=True)
class Difference:
    """canary minus stable, its standard error, z, and the one-sided lower bound."""

    metric: str
    canary: float
    stable: float
    difference: float
    se: float
    z: float
    p_worse: float
    lower_bound: float

    def as_dict(self):
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Comparison:
    stable: int
    canary: int
    stable_live: Optional['LiveMetrics']
    canary_live: Optional['LiveMetrics']
    differences: List[Difference]
    recommendation: str
    reasons: List[str]

    def evidence(self) -> dict:
        def counts(live):
            return {'labelled': live.examples, 'positives': live.positives} if live else {'labelled': 0}
        return {'canary_test': {'recommendation': self.recommendation, 'reasons': self.reasons,
                                'stable': {'version': self.stable, **counts(self.stable_live)},
                                'canary': {'version': self.canary, **counts(self.canary_live)},
                                'differences': [d.as_dict() for d in self.differences]}}


def _difference(metric: str, canary: float, stable: float, se: float, alpha: float) -> Difference:
    from scipy import stats
    difference = canary - stable
    se = max(se, 1e-12)  # two perfect scores: any difference is decisive
    z = difference / se
    return Difference(metric, canary, stable, difference, se, z, float(stats.norm.cdf(z)),
                      difference - stats.norm.ppf(1 - alpha) * se)


def _short(live: Optional['LiveMetrics'], settings: Settings) -> Optional[str]:
    """Why a version's feedback is not enough to judge, or None."""
    from monitoring import live_metrics
    if live is None:
        return 'no labelled examples yet'
    if live.examples < settings.min_labelled:
        return f'{live.examples} labelled examples of the {settings.min_labelled} needed'
    fewest = min(live.positives, live.examples - live.positives)
    if live.auc is None or live.auc_se is None or fewest < live_metrics.MIN_PER_CLASS:
        return f'{fewest} examples of its rarer class, {live_metrics.MIN_PER_CLASS} needed for the AUC'
    return None


def compare(stable: int, canary: int, stable_live: Optional['LiveMetrics'], canary_live: Optional['LiveMetrics'],
            settings: Settings = Settings()) -> Comparison:
    short = {name: _short(live, settings) for name, live in (('stable', stable_live), ('canary', canary_live))}
    waiting = [f'{name} version {version}: {why}' for (name, why), version in zip(short.items(), (stable, canary))
               if why]
    if waiting:
        return Comparison(stable, canary, stable_live, canary_live, [], WAIT, waiting)
    auc = _difference('auc', canary_live.auc, stable_live.auc,
                      math.sqrt(canary_live.auc_se ** 2 + stable_live.auc_se ** 2), settings.alpha)
    pc, ps = canary_live.accuracy, stable_live.accuracy
    nc, ns = canary_live.examples, stable_live.examples
    accuracy = _difference('accuracy', pc, ps, math.sqrt(pc * (1 - pc) / nc + ps * (1 - ps) / ns), settings.alpha)
    differences = [auc, accuracy]
    # Two metrics tested: each at alpha / 2 (Bonferroni), so a canary as good as stable is rolled back
    # by chance at most alpha of the time.
    worse = [d for d in differences if d.p_worse < settings.alpha / 2]
    if worse:
        reasons = [f'canary {d.metric} {d.canary:.4f} vs stable {d.stable:.4f}: worse beyond chance '
                   f'(z = {d.z:.2f}, one-sided p = {d.p_worse:.4f} < {settings.alpha / 2:g})' for d in worse]
        return Comparison(stable, canary, stable_live, canary_live, differences, ROLLBACK, reasons)
    if all(d.lower_bound > -settings.margin for d in differences):
        reasons = [f'canary {d.metric} {d.canary:.4f} vs stable {d.stable:.4f}: at worst {d.lower_bound:+.4f} '
                   f'({1 - settings.alpha:.0%} one-sided), within the margin of {settings.margin}' for d in differences]
        return Comparison(stable, canary, stable_live, canary_live, differences, PROMOTE, reasons)
    reasons = [f'canary {d.metric} {d.canary:.4f} vs stable {d.stable:.4f}: could be up to {-d.lower_bound:.4f} '
               f'worse, more than the margin of {settings.margin}: more feedback needed'
               for d in differences if d.lower_bound <= -settings.margin]
    return Comparison(stable, canary, stable_live, canary_live, differences, WAIT, reasons)
