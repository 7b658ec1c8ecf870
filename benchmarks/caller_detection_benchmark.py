"""The abuse monitor's thresholds against traffic (monitoring/callers.py): how the crowd's PRADA
statistic W is spread, how far below it the probers' falls, how often each kind of caller is
named, and what a pass costs.

The crowd replays random trips of the taxi sample (one to five per request); the probers are
tests/support/probing.py's (a line walker, a boundary searcher, a duplicator, and a perturber
after PRADA's JbDA attack), answered by its stand-in model. Each seed is a window of `--callers`
crowd callers of N queries each plus one prober of max(N, 60) queries, for every N.

    .venv/bin/python benchmarks/caller_detection_benchmark.py [--seeds 10] [--callers 10] [--sizes 60,100,250,1000]
"""

import argparse
import os
import random
import sys
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')
# The traffic generators are the tests' own.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'tests'))

import numpy as np  # noqa: E402

from monitoring import callers  # noqa: E402
from support import probing  # noqa: E402



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--seeds', type=int, default=10)
    parser.add_argument('--callers', type=int, default=10)
    parser.add_argument('--sizes', default='60,100,250,1000')
    args = parser.parse_args()
    trips = probing.taxi_trips()
    features = callers.Features(probing.NUMERIC, probing.CATEGORICAL)
    probers = {**probing.PROBERS, **probing.HARDER_PROBERS}
    delta = callers.Thresholds().shapiro_delta
    print(f'delta {delta}; {args.seeds} seeds of {args.callers} crowd callers + 1 prober each')
    print('| queries per caller | crowd W: min / 1st pct / median | crowd named | '
          + ' | '.join(f'{name}: W max, named' for name in probers) + ' | slowest pass |')
    for size in (int(s) for s in args.sizes.split(',')):
        crowd_w, crowd_named, found, slowest = [], 0, {name: [] for name in probers}, 0.0
        for seed in range(args.seeds):
            rng = random.Random(1000 + seed)
            # Queries, not requests: N trips per crowd caller, in requests of one to five.
            schedules = {}
            for name, requests in probing.crowd(trips, rng, args.callers, size).items():
                flat = [t for r in requests for t in r][:size]
                schedules[name] = [flat[i:i + 3] for i in range(0, len(flat), 3)]
            for name, make in probers.items():
                prober_rng = random.Random(seed)
                everyone = dict(schedules, prober=[[t] for t in make(trips, prober_rng, max(size, 60))])
                order = probing.interleave(everyone, random.Random(seed))
                started = time.perf_counter()
                table = probing.log_table([(c, everyone[c][i]) for c, i in order])
                findings = callers.assess(table, features, 'probabilities', 'is_outlier', window_seconds=3600)
                slowest = max(slowest, time.perf_counter() - started)
                for f in findings:
                    if f.caller == 'prober':
                        found[name].append((f.shapiro_w, f.flagged))
                    elif name == 'line-walker':  # the crowd is the same for every prober of a seed: count it once
                        crowd_w.append(f.shapiro_w)
                        crowd_named += f.flagged
        w = np.array([x for x in crowd_w if x is not None])
        cells = [f'{max((x for x, _ in found[name] if x is not None), default=float("nan")):.3f}, '
                 f'{sum(named for _, named in found[name])}/{len(found[name])}' for name in probers]
        print(f'| {size} | {w.min():.3f} / {np.percentile(w, 1):.3f} / {np.median(w):.3f} | '
              f'{crowd_named}/{len(crowd_w)} | ' + ' | '.join(cells) + f' | {slowest:.1f} s |')


if __name__ == '__main__':
    main()
