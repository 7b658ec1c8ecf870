"""What tuning finds on the sample against today's constants, and what it costs.

On one fresh workspace with the 15k-row taxi sample: the pipeline with today's
hyperparameters (taxi_model/hyperparameters.py) at each seed; then one run that
tunes (`--tune`, the config's budget unless given); then, at the same seeds,
runs that train with that tuning. For each run, the candidate's AUC overall and
on the payment_type=Credit Card slice (TFMA, the Evaluator's eval split), and
the seconds of the Tuner, Trainer and BulkInferrer tasks. Prints every run, the
trials, then means and standard deviations over the seeds.

    .venv/bin/python benchmarks/tuning_benchmark.py [--seeds 1 2 3] [--trials 12] [--workspace DIR]

The tuning's trials are scored on the eval split the Evaluator also scores, so
the tuned AUC is, if anything, optimistic: see docs/performance.md#hyperparameter-tuning.
"""

import argparse
import dataclasses

import json
import os
import statistics
import tempfile
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')

from components.artifact_contents import metrics_by_slice  # noqa: E402
from pipeline import data, local_runner  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from taxi_model.hyperparameters import Hyperparameters  # noqa: E402

CARD = 'payment_type=Credit Card'


def _run(workspace, seed, **settings):
    config = dataclasses.replace(PipelineConfig.for_workspace(workspace, hyperparameters=Hyperparameters(seed=seed),
                                                              **settings), report_dir=None)
    summary = local_runner.run(config, emit_line=lambda line: None)
    if not summary.succeeded:
        raise SystemExit(summary.render())
    metrics = metrics_by_slice(summary.outputs['Evaluator']['evaluation'])
    seconds = {c.node_id: round(c.seconds, 1) for c in summary.components}
    return {'seed': seed, 'source': summary.tuning['source'], 'hyperparameters': summary.tuning['hyperparameters'],
            'auc': metrics['overall'][0]['auc'], 'card_auc': metrics[CARD][0]['auc'],
            'seconds': {k: seconds.get(k) for k in ('Tuner', 'Trainer', 'BulkInferrer')},
            'run_seconds': round(summary.wall_seconds, 1), 'tuning': summary.tuning}


def _spread(values):
    return f'{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--trials', type=int, help='tuning trials (default: the config\'s tuning_max_trials)')
    parser.add_argument('--workspace', help='(default: a new temporary directory)')
    args = parser.parse_args()
    workspace = args.workspace or tempfile.mkdtemp(prefix='tuning-benchmark-')
    data.prepare_sample(os.path.join(workspace, 'data'))
    budget = {'tuning_max_trials': args.trials} if args.trials else {}
    results = {'defaults': [_run(workspace, seed) for seed in args.seeds]}
    tuning = _run(workspace, Hyperparameters().seed, tune=True, **budget)
    results['tuning run'] = [tuning]
    results['tuned'] = [_run(workspace, seed) for seed in args.seeds]
    for label, runs in results.items():
        for r in runs:
            print(json.dumps({'runs': label, **{k: v for k, v in r.items() if k != 'tuning'}}, sort_keys=True))
    trials = tuning['tuning']['trials']
    print(f'\nTuning: {len(trials)} trials in {tuning["tuning"]["seconds"]:.0f} s (Tuner task '
          f'{tuning["seconds"]["Tuner"]} s); best {tuning["tuning"]["hyperparameters"]}')
    for t in sorted(trials, key=lambda t: -(t['score'] or 0)):
        print(f'  trial {t["trial_id"]}: val AUC {t["score"]:.4f} {t["values"]} ({t["seconds"]} s)')
    print('\n| hyperparameters | AUC overall | AUC Credit Card | Tuner s | Trainer s | BulkInferrer s |')
    print('| --- | --- | --- | --- | --- | --- |')
    for label in ('defaults', 'tuned'):
        runs = results[label]
        print(f'| {label} ({", ".join(f"{k}={v}" for k, v in sorted(runs[0]["hyperparameters"].items()))}) | '
              f'{_spread([r["auc"] for r in runs])} | {_spread([r["card_auc"] for r in runs])} | '
              f'{statistics.mean(r["seconds"]["Tuner"] for r in runs):.1f} | '
              f'{statistics.mean(r["seconds"]["Trainer"] for r in runs):.1f} | '
              f'{statistics.mean(r["seconds"]["BulkInferrer"] for r in runs):.1f} |')
    print(f'\nseeds {args.seeds}; workspace {workspace}')



if __name__ == '__main__':
    main()
