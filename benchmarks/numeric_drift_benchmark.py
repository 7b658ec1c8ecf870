"""The skew and drift tests under no shift and under a x1.6 units change: checks the calibration of their
thresholds (components/drift_check/drift.py) on real data and prints the margins of every test of the
curated schema, and from which window size a units change is caught.

Training data and traffic both come from the TFX taxi sample, shuffled (the file is not in random order:
the airport's share of pickups is 0% in some blocks of 3,000 rows and 22% in others): --training-rows of it
are the training split (its TFDV statistics are what a version carries: the deciles of every numeric
feature), the rest the population clean traffic is drawn from, with replacement, at the window sizes the
monitor sees. Over --repeats windows per feature and size:

- amounts (no upper bound: fare, trip_miles, trip_seconds): skew (a window against the training statistics)
  and drift (against the window before, both clean), with the location/scale test (Wasserstein within the
  training deciles, in training IQRs) and the shape test (Jensen-Shannon divergence in the training quantile
  buckets); and the same with the feature x1.6 in the window (a units change: miles sent in km);
- codes and positions (hour, day, month, area, latitude, longitude: shape) and the categorical features
  (TFDV's L-infinity) under no shift; positions x1.6 too; nightly-only traffic for trip_start_hour;
- the pipeline's drift check: two resampled spans' statistics against each other, clean and x1.6.

A numeric test's threshold is drift.MARGIN x the 99.9th percentile of its value between samples of these
sizes drawn from the training shares (multinomial, at run time); the script shows whether MARGIN covers what
real resamples reach (threshold / clean max above 1 everywhere) and what power is left (x1.6 / threshold).

    .venv/bin/python benchmarks/numeric_drift_benchmark.py [--repeats 300] [--training-rows 2000]
"""

import argparse
import os
import random
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import tensorflow_data_validation as tfdv  # noqa: E402
from tensorflow_data_validation.statistics import stats_impl  # noqa: E402
from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: E402

import schemas  # noqa: E402
from components.drift_check import drift  # noqa: E402
from pipeline import data  # noqa: E402

SIZES = (100, 250, 750, 2000, 5000)
UNITS = 1.6
_ARROW = {schema_pb2.FLOAT: (pa.float32(), float), schema_pb2.INT: (pa.int64(), int),
          schema_pb2.BYTES: (pa.binary(), str.encode)}


def columns(header, rows, schema):
    """Each schema feature's values per row (None where missing), typed as the schema says."""
    at = {name: i for i, name in enumerate(header)}
    found = {}
    for feature in schema.feature:
        convert = _ARROW[feature.type][1]
        found[feature.name] = [convert(row[at[feature.name]]) if row[at[feature.name]] != '' else None
                               for row in rows]
    return found


def statistics(values, schema):
    """TFDV statistics as the pipeline and the monitor compute them (default options: deciles)."""
    arrays, names = [], []
    for feature in schema.feature:
        arrow_type = _ARROW[feature.type][0]
        arrays.append(pa.array([[v] if v is not None else [] for v in values[feature.name]], pa.list_(arrow_type)))
        names.append(feature.name)
    return stats_impl.generate_statistics_in_memory(pa.RecordBatch.from_arrays(arrays, names),
                                                    tfdv.StatsOptions(schema=schema))


def present(values):
    """The values there are; FLOAT ones as float32, as TFDV and the request logs hold them (a value parsed
    to float64 can sit just above the float32 edge it equals there, and fall in the wrong bucket)."""
    found = [v for v in values if v is not None]
    return np.array(found, dtype=np.float32).astype(float) if found and isinstance(found[0], float) \
        else np.array(found)


def linf(reference, current):
    """TFDV's L-infinity: the largest difference of a value's share between the two sides."""
    keys = np.union1d(reference, current)

    def shares(values):
        found, counts = np.unique(values, return_counts=True)
        return np.array([dict(zip(found, counts)).get(k, 0) for k in keys]) / len(values)
    return float(np.max(np.abs(shares(reference) - shares(current))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=300, help='windows per feature and size (default 300)')
    parser.add_argument('--training-rows', type=int, default=2000,
                        help='rows of the training split (default 2,000, as the tests\' model; the pipeline trains '
                        'on ~10,000 of the sample, which leaves a population too small for windows past 2,000)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    schema = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    header, rows = data.read_rows(data.taxi_sample_path())
    order = list(range(len(rows)))
    random.Random(args.seed).shuffle(order)
    training_rows = [rows[i] for i in order[:args.training_rows]]
    population_rows = [rows[i] for i in order[args.training_rows:]]
    training_values = columns(header, training_rows, schema)
    population = {name: present(values) for name, values in columns(header, population_rows, schema).items()}
    training_statistics = statistics(training_values, schema)
    buckets = drift.quantile_buckets(training_statistics)
    features = {f.name: f for f in schema.feature}
    measurements = [f.name for f in schema.feature if f.HasField('skew_comparator') and drift.is_measurement(f)
                    and f.name in buckets]
    codes = [f.name for f in schema.feature if f.HasField('skew_comparator') and not drift.is_measurement(f)
             and f.type != schema_pb2.BYTES]
    positions = [name for name in codes if features[name].type == schema_pb2.FLOAT]
    categorical = [f.name for f in schema.feature if f.HasField('skew_comparator') and f.type == schema_pb2.BYTES]
    thresholds = {(f.name, kind): getattr(f, kind) for f in schema.feature for kind in ('skew_comparator',
                                                                                          'drift_comparator')}
    rng = np.random.default_rng(args.seed)
    # Windows drawn from a finite population vary more than windows of live traffic (by 1/population on top
    # of 1/n): sizes past 40% of it would report false alarms the monitor would not raise.
    global SIZES
    SIZES = tuple(n for n in SIZES if n <= 0.4 * len(population_rows))
    print(f'Training split: {len(training_rows):,} rows; clean traffic drawn from the other {len(population_rows):,}; '
          f'{args.repeats} windows per feature and size.\n')
    training_present = {name: present(values) for name, values in training_values.items()}

    def draw(name, n):
        return rng.choice(population[name], size=n, replace=True)

    # Per test: every clean value over its threshold (the worst is the margin left), and every x1.6 value
    # over its threshold (the weakest says whether the change is caught at that size).
    margins, catches = [], []

    def tests(name, buckets_, expected, current, a, b, key):
        comparator = thresholds[(name, f'{key}_comparator')]
        jsd = comparator.jensen_shannon_divergence.threshold
        return {drift.test_name(f.measure): f for f in drift.numeric_tests(
            name, buckets_, expected, current, a, b, jsd, drift.is_measurement(features[name]))}

    # -- measurements: location/scale and shape, clean and x1.6 --------------------------------------
    print('Measurements: clean max and x1.6 min over the windows, against the threshold for that size '
          '(location/scale: Wasserstein within the training deciles / training IQR; shape: Jensen-Shannon '
          'divergence in the training quantile buckets).\n')
    print('| feature | n | test | location/scale clean | x1.6 | threshold | shape clean | x1.6 | threshold |')
    print('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    for name in measurements:
        b = buckets[name]
        for n in SIZES:
            for key in ('skew', 'drift'):
                clean, shifted = {'location/scale': [], 'shape': []}, {'location/scale': [], 'shape': []}
                limits = None
                for _ in range(args.repeats):
                    previous, window = draw(name, n), draw(name, n)
                    expected, a = (b.training, b.count) if key == 'skew' else (b.shares(previous), n)
                    for found, current in ((clean, window), (shifted, window * UNITS)):
                        measured = tests(name, b, expected, b.shares(current), a, n, key)
                        limits = {test: float(f.threshold) for test, f in measured.items()}
                        for test, f in measured.items():
                            found[test].append(f.value)
                cells = []
                for test in ('location/scale', 'shape'):
                    margins.append((limits[test] / max(clean[test]), name, key, test, n))
                    if test == 'location/scale':
                        caught = np.mean(np.array(shifted[test]) > limits[test])
                        catches.append((min(shifted[test]) / limits[test], name, key, test, n, caught))
                    cells += [f'{max(clean[test]):.4f}', f'{min(shifted[test]):.4g}', f'{limits[test]:.4f}']
                print(f'| {name} | {n:,} | {key} | ' + ' | '.join(cells) + ' |')

    # -- codes, positions and categorical features -------------------------------------------------------
    print('\nCodes and positions (shape) and categorical features (L-infinity): clean max over the windows, for '
          'positions / x1.6 min, (threshold at that size).\n')
    print('| feature | test | ' + ' | '.join(f'n={n:,}' for n in SIZES) + ' |')
    print('| --- | --- |' + ' ---: |' * len(SIZES))
    for name in codes + categorical:
        for key in ('skew', 'drift'):
            comparator = thresholds[(name, f'{key}_comparator')]
            if not comparator.ListFields():
                continue
            cells = []
            for n in SIZES:
                measured, shifted, limit = [], [], None
                for _ in range(args.repeats):
                    previous, window = draw(name, n), draw(name, n)
                    if name in codes:
                        b = buckets[name]
                        expected, a = (b.training, b.count) if key == 'skew' else (b.shares(previous), n)
                        f = tests(name, b, expected, b.shares(window), a, n, key)['shape']
                        if name in positions:
                            shifted.append(tests(name, b, expected, b.shares(window * UNITS), a, n, key)['shape'])
                    else:
                        reference = training_present[name] if key == 'skew' else previous
                        f = drift.categorical_test(drift.FeatureDrift(name, 'L-infinity', linf(reference, window),
                                                                      f'{comparator.infinity_norm.threshold:g}',
                                                                      False), len(reference), n)
                    measured.append(f.value)
                    limit = float(f.threshold)
                margins.append((limit / max(measured), name, key, drift.test_name(f.measure), n))
                if shifted:
                    catches.append((min(g.value / float(g.threshold) for g in shifted), name, key, 'shape', n,
                                    np.mean([g.drifted for g in shifted])))
                    cells.append(f'{max(measured):.4f} / {min(g.value for g in shifted):.3f} ({limit:.3g})')
                else:
                    cells.append(f'{max(measured):.4f} ({limit:.3g})')
            print(f'| {name} | {key}: {drift.test_name(f.measure)} | ' + ' | '.join(cells) + ' |')
    hour = buckets['trip_start_hour']
    night = population['trip_start_hour'][population['trip_start_hour'] < 6]
    nightly = [tests('trip_start_hour', hour, hour.training, hour.shares(rng.choice(night, size=SIZES[0])),
                     hour.count, SIZES[0], 'skew')['shape'] for _ in range(args.repeats)]
    print(f'\nNightly-only traffic (hours 0-5), n={SIZES[0]}: trip_start_hour skew (shape) min '
          f'{min(f.value for f in nightly):.3f}, threshold {nightly[0].threshold}.')

    # -- the pipeline's drift check: statistics against statistics -------------------------------------
    span = 3000
    repeats = max(args.repeats // 10, 10)
    print(f'\nThe drift check: two {span:,}-row resamples of the sample, statistics against statistics '
          f'({repeats} pairs clean, {repeats} with the feature x1.6): location/scale as the statistics prove it '
          '(drift.proven_location_scale) for amounts, shape for positions.\n')
    print('| feature | test | clean max | x1.6 min | threshold |')
    print('| --- | --- | ---: | ---: | ---: |')
    all_rows = population_rows + training_rows
    pairs = []
    for _ in range(repeats):
        a = columns(header, random.Random(int(rng.integers(1 << 30))).choices(all_rows, k=span), schema)
        b = columns(header, random.Random(int(rng.integers(1 << 30))).choices(all_rows, k=span), schema)
        pairs.append((statistics(a, schema), b, statistics(b, schema)))

    def judged(before, after, name):
        test = 'location/scale' if name in measurements else 'shape'
        return next(f for f in drift.compare(after, before, schema)[0].features
                    if f.feature == name and drift.test_name(f.measure) == test)
    for name in measurements + positions:
        clean = [judged(before, after, name) for before, _, after in pairs]
        shifted = [judged(before, statistics(dict(b, **{name: [v * UNITS if v is not None else None
                                                                for v in b[name]]}), schema), name)
                   for before, b, _ in pairs]
        worst = max(clean, key=lambda f: f.value / float(f.threshold))
        weakest = min(shifted, key=lambda f: f.value / float(f.threshold))
        test = drift.test_name(worst.measure)
        margins.append((float(worst.threshold) / worst.value, name, 'drift check', test, span))
        catches.append((weakest.value / float(weakest.threshold), name, 'drift check', test, span,
                        np.mean([f.drifted for f in shifted])))
        print(f'| {name} | {test} | {worst.value:.4f} | {weakest.value:.4g} | {worst.threshold} |')

    # -- what holds ------------------------------------------------------------------------------------
    low = sorted(margins)[:5]
    print(f'\nThreshold / clean max, the five smallest over every test, size and drift check (below 1: a false '
          f'alarm among the {args.repeats} clean windows): ' + '; '.join(
              f'{m:.2f} ({name} {key} {test}, n={n:,})' for m, name, key, test, n in low) +
          f'. drift.MARGIN {drift.MARGIN} over the {drift.NULL_QUANTILE:.1%} of {drift.NULL_DRAWS:,} multinomial '
          f'draws; L_INFINITY_ALLOWANCE {drift.L_INFINITY_ALLOWANCE}; tests from {drift.MIN_VALUES} values.')
    print('x1.6 caught, per feature and comparison: the smallest size from which every window of every larger '
          'size catches it; per size, the smallest x1.6 value over its threshold and the share of windows caught:')
    for name in measurements + positions:
        for key in ('skew', 'drift', 'drift check'):
            sizes = sorted((n, ratio, test, share) for ratio, f, k, test, n, share in catches
                           if f == name and k == key)
            caught = [n for n, _, _, _ in sizes if all(r > 1 for m, r, _, _ in sizes if m >= n)]
            print(f'  {name} {key} ({sizes[0][2]}): ' + (f'from n={caught[0]:,}' if caught else 'not at these sizes')
                  + ' (' + ', '.join(f'{n:,}: {r:.2f}x, {share:.1%}' for n, r, _, share in sizes) + ')')
    print(f'\n{time.perf_counter() - started:.0f} s')


if __name__ == '__main__':
    main()
