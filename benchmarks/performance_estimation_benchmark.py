"""Performance estimated before labels arrive, next to the performance realised once they do, on traffic
the model never saw: clean, covariate-shifted, and two kinds where the labels moved.

The taxi sample is shuffled (seeded) and split: the pipeline runs on the first --train-rows (its own
train/eval split; the Trainer fits the calibration the model carries on eval), and the rest is held out
as traffic. Windows of --window rows are drawn from it, per kind:

- clean: drawn uniformly;
- covariate: drawn with weights on the features only (card payments ~80% instead of a third, night
  trips 3x; tests/support/shifted_traffic.py): the inputs drift, P(label | features) does not;
- concept: drawn uniformly, tips halved: the inputs are as before, the labels are not;
- market: `pipeline.data.drifted` (fares tripled, trips at night, cards turned to cash with no tip):
  inputs and labels both moved.

Each window is scored by the trained SavedModel (`serving_raw`, in batch); labels come from the rows'
tips by the model's feedback rule. Printed per kind: medians over the windows of the estimate, its
95% interval and the realised value (accuracy and ROC AUC), how many windows' realised values fell
inside the interval, the label drift and concept drift verdicts, and attribution drift on --explain
rows per window through the `explain` signature. Also: the seconds the calibration added to the
Trainer (as the model records them), the clean windows' largest attribution change (what
attribution_drift.THRESHOLD is set against), and the time of one estimate.

    .venv/bin/python benchmarks/performance_estimation_benchmark.py [--train-rows 10000] [--windows 10]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The traffic generators are test support; the repository first, so tests/components (a folder of tests)
# does not stand in for the components package.
sys.path[:0] = [REPO]
sys.path.append(os.path.join(REPO, 'tests'))

from foundation import calibration as model_calibration  # noqa: E402
from foundation.model_files import CALIBRATION_FILE  # noqa: E402
from monitoring import attribution_drift, label_drift, performance_estimation  # noqa: E402
from pipeline import data  # noqa: E402
from support import shifted_traffic  # noqa: E402
from support.samples import as_dicts  # noqa: E402
from taxi_model import contract  # noqa: E402
from taxi_model.features import LABEL  # noqa: E402

KINDS = ('clean', 'covariate', 'concept', 'market')
# Kinds whose inputs drifted (the monitor's skew and drift would say so): concept drift is not called there.
INPUTS_DRIFTED = {'clean': False, 'covariate': True, 'concept': False, 'market': True}


def train(rows, header, workdir, train_steps):
    """The pipeline on `rows` as one span; the Trainer's SavedModel (pushed or not: a gate may refuse it)."""
    from pipeline import local_runner
    from pipeline.config import PipelineConfig
    overrides = {'train_steps': train_steps} if train_steps else {}
    config = PipelineConfig.for_workspace(workdir, **overrides)
    data.write_span(config.data_root, 1, header, rows)
    started = time.perf_counter()
    summary = local_runner.run(config, emit_line=lambda line: None)
    if not summary.succeeded:
        sys.exit(f'error: the pipeline failed:\n{summary.render()}')
    print(f'pipeline on {len(rows):,} rows: {time.perf_counter() - started:.1f}s, '
          f'Trainer {summary_seconds(summary, "Trainer")}')
    return os.path.join(summary.outputs['Trainer']['model'], 'Format-Serving')


def summary_seconds(summary, component):
    for step in summary.components:
        if step.node_id == component:
            return f'{step.seconds:.1f}s'
    return '?'


def windows(kind, header, held_out, size, seed):
    """Rows of one window (dicts) of `kind`."""
    at = {name: i for i, name in enumerate(header)}
    if kind == 'covariate':
        return shifted_traffic.covariate_shifted(as_dicts(header, held_out), size, seed)
    drawn = random.Random(seed).choices(held_out, k=size)
    if kind == 'market':
        return as_dicts(header, data.drifted(header, drawn))
    rows = as_dicts(header, drawn)
    if kind == 'concept':
        tips = at[LABEL.tips_column]
        rows = [dict(r, **{LABEL.tips_column: f'{float(r[header[tips]]) / 2:.2f}'}) if r[header[tips]] else r
                for r in rows]
    return rows


def call(model, signature, rows):
    inputs = {k: tf.constant(v) for k, v in contract.raw_inputs(rows).items()}
    return {k: v.numpy() for k, v in model.signatures[signature](**inputs).items()}


def labels_of(rows):
    observed = {LABEL.tips_column: np.array([float(r[LABEL.tips_column]) if r.get(LABEL.tips_column) else np.nan
                                             for r in rows])}
    logged = {LABEL.fare_column: np.array([float(r[LABEL.fare_column]) if r.get(LABEL.fare_column) else np.nan
                                           for r in rows])}
    return contract.labels_from_feedback(observed, logged)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train-rows', type=int, default=10_000)
    parser.add_argument('--train-steps', type=int, default=0, help='0: the Trainer default (epochs over the data)')
    parser.add_argument('--windows', type=int, default=10)
    parser.add_argument('--window', type=int, default=1000, help='rows per window')
    parser.add_argument('--explain', type=int, default=attribution_drift.SAMPLE, help='rows explained per window')
    parser.add_argument('--clean-resamples', type=int, default=30,
                        help='clean samples of --explain rows for the attribution threshold')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    header, rows = data.read_rows(data.taxi_sample_path())
    rows = list(rows)
    random.Random(args.seed).shuffle(rows)
    trained_on, held_out = rows[:args.train_rows], rows[args.train_rows:]
    with tempfile.TemporaryDirectory() as workdir:
        model_dir = train(trained_on, header, workdir, args.train_steps)
        with open(os.path.join(model_dir, CALIBRATION_FILE)) as f:
            calibration = model_calibration.Calibration.from_json(f.read())
        model = tf.saved_model.load(model_dir)
        reference = calibration.reference
        print(f'calibration: {calibration.examples:,} eval examples, label rate {calibration.label_rate:.4f}, '
              f'ECE {calibration.ece_before:.4f} -> {calibration.ece_after:.4f} (cross-fitted); '
              f'added to the Trainer: {calibration.seconds:.2f}s')
        print(f'reference on eval: accuracy estimated {reference.estimated_accuracy:.4f} realised '
              f'{reference.realised_accuracy:.4f}; AUC estimated {reference.estimated_auc:.4f} realised '
              f'{reference.realised_auc:.4f}')
        print(f'held out: {len(held_out):,} rows; {args.windows} windows of {args.window:,} per kind\n')

        def explain(batch):
            outputs = call(model, contract.EXPLAIN, batch)
            return {name: outputs[key] for name, key in calibration.attributions.outputs.items()}

        results = {}
        for kind in KINDS:
            for w in range(args.windows):
                window = windows(kind, header, held_out, args.window, seed=1000 * (KINDS.index(kind) + 1) + w)
                labels = labels_of(window)
                known = np.isfinite(labels)
                scores = np.reshape(call(model, contract.PREDICT_RAW, window)[contract.PROBABILITIES], -1)
                started = time.perf_counter()
                served = performance_estimation.estimate(scores, calibration)
                seconds = time.perf_counter() - started
                found, comparisons = performance_estimation.side_by_side(scores[known], labels[known], calibration)
                drift = label_drift.label_drift(labels[known], calibration.label_rate, calibration.examples)
                concept = label_drift.concept_drift(comparisons, found, INPUTS_DRIFTED[kind])
                sample = [window[i] for i in attribution_drift.sample_indexes(len(window), args.explain, seed=w)]
                attributions = attribution_drift.measure(sample, len(sample), explain, calibration.attributions)
                results.setdefault(kind, []).append((served, comparisons, drift, concept, attributions, seconds))

        print('Estimated (all rows of the window) | estimate on the labelled rows [95% interval] vs realised; '
              'medians over windows; inside = windows whose realised value fell in the interval')
        for kind in KINDS:
            runs = results[kind]
            line = [f'  {kind:<9}']
            for i, metric in enumerate(('accuracy', 'auc')):
                comparisons = [r[1][i] for r in runs if r[1][i].estimated is not None and r[1][i].realised is not None]
                if not comparisons:
                    line.append(f'{metric}: undefined (one class)')
                    continue
                med = statistics.median
                estimated = med(getattr(r[0], metric).value for r in runs)
                low, high = med(c.interval[0] for c in comparisons), med(c.interval[1] for c in comparisons)
                inside = sum(bool(c.within) for c in comparisons)
                line.append(f'{metric}: est {estimated:.4f} | {med(c.estimated for c in comparisons):.4f} '
                            f'[{low:.4f}, {high:.4f}] real {med(c.realised for c in comparisons):.4f}, '
                            f'inside {inside}/{len(comparisons)}')
            print('  '.join(line))
            drifts = [r[2] for r in runs if r[2] is not None]
            concepts = [r[3] for r in runs if r[3] is not None]
            attributions = [r[4] for r in runs if r[4] is not None]
            changed = sorted({f.feature for a in attributions for f in a.drifted})
            print(f'    label rate {statistics.median(d.rate for d in drifts):.4f} vs {calibration.label_rate:.4f}: '
                  f'label drift in {sum(d.drifted for d in drifts)}/{len(drifts)}; concept drift in '
                  f'{sum(c.signal for c in concepts)}/{len(concepts)} (dropped below the interval or reference in '
                  f'{sum(bool(c.dropped) for c in concepts)}); attribution drift in '
                  f'{sum(bool(a.drifted) for a in attributions)}/{len(attributions)}'
                  + (f' ({", ".join(changed)})' if changed else ''))

        clean = held_out
        largest = []
        for r in range(args.clean_resamples):
            sample = as_dicts(header, random.Random(50_000 + r).choices(clean, k=args.explain))
            found = attribution_drift.measure(sample, len(sample), explain, calibration.attributions)
            largest.append(max(f.change for f in found.features))
        print(f'\nAttribution change on {args.clean_resamples} clean samples of {args.explain} rows: largest feature '
              f'change median {statistics.median(largest):.3f}, max {max(largest):.3f} '
              f'(threshold {attribution_drift.THRESHOLD})')
        print(f'One estimate of {args.window:,} rows ({performance_estimation.SIMULATIONS} simulations): '
              f'{statistics.median(r[5] for runs in results.values() for r in runs) * 1000:.1f} ms median')
        big = np.random.default_rng(0).uniform(0, 1, 100_000)
        started = time.perf_counter()
        performance_estimation.estimate(big, calibration)
        print(f'One estimate of 100,000 rows: {time.perf_counter() - started:.2f}s')


if __name__ == '__main__':
    main()
