"""The Trainer's speed and the model it gives, per training setting, over seeds.

One workspace per size: a span of N rows (the taxi sample, or drawn from it as the scale benchmark
draws), then, for each seed and, within a seed, each setting in turn (so machine noise falls on all
of them alike), a pipeline run with those hyperparameters. ExampleGen, StatisticsGen and Transform
run once and are cached after; the Trainer and what follows it run each time. For each run: the
Trainer's fit seconds and examples/s (steps taken x batch size, from the training record), the
Trainer task's seconds, steps taken, and the candidate's AUC on the whole eval split (the
Evaluator's). Prints every run, then per setting the medians, the AUC's mean and standard deviation,
and the speed ratio to the first setting.

    .venv/bin/python benchmarks/trainer_benchmark.py [--rows 15002] [--seeds 1 2 3]
        [--settings 64:0.003:1 256:0.006:16]   # batch_size:learning_rate:steps_per_execution
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
from foundation.model_files import TRAINING_RECORD  # noqa: E402
from pipeline import data, local_runner  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from taxi_model.hyperparameters import Hyperparameters  # noqa: E402

SAMPLE_ROWS = 15002


def _setting(text: str) -> dict:
    batch, rate, per_execution = text.split(':')
    return {'batch_size': int(batch), 'learning_rate': float(rate), 'steps_per_execution': int(per_execution)}


def _run(workspace: str, seed: int, setting: dict) -> dict:
    hp = Hyperparameters(seed=seed, **setting)
    config = dataclasses.replace(PipelineConfig.for_workspace(workspace, hyperparameters=hp), report_dir=None)
    summary = local_runner.run(config, emit_line=lambda line: None)
    if 'Trainer' not in summary.outputs:
        raise SystemExit(summary.render())
    with open(os.path.join(summary.outputs['Trainer']['model_run'], TRAINING_RECORD)) as f:
        record = json.load(f)
    metrics = metrics_by_slice(summary.outputs['Evaluator']['evaluation'])
    trainer = next(c.seconds for c in summary.components if c.node_id == 'Trainer')
    return {'seed': seed, **setting, 'auc': metrics['overall'][0]['auc'], 'steps_taken': record['steps_taken'],
            'fit_seconds': record['fit_seconds'], 'trainer_seconds': round(trainer, 2),
            'examples_per_second': round(record['steps_taken'] * setting['batch_size'] / record['fit_seconds'])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=SAMPLE_ROWS)
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--settings', nargs='+', default=['64:0.003:1', '64:0.003:16', '256:0.006:16'],
                        help='batch_size:learning_rate:steps_per_execution, the first the reference')
    parser.add_argument('--workspace', help='(default: a new temporary directory)')
    args = parser.parse_args()
    settings = [_setting(s) for s in args.settings]
    workspace = args.workspace or tempfile.mkdtemp(prefix='trainer-benchmark-')
    data.prepare_sample(os.path.join(workspace, 'data'), rows=args.rows,
                        seed=None if args.rows == SAMPLE_ROWS else 1)
    _run(workspace, args.seeds[0], settings[0])  # the cached inputs, and a pushed baseline for every run after
    runs = []
    for seed in args.seeds:
        for setting in settings:
            runs.append(_run(workspace, seed, setting))
            print(json.dumps(runs[-1], sort_keys=True), flush=True)
    print(f'\n{args.rows:,} rows, seeds {args.seeds}\n')
    print('| batch | learning rate | steps/execution | fit examples/s (median) | ratio | fit s | Trainer task s '
          '| steps taken | AUC (mean ± sd) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    reference = None
    for setting in settings:
        mine = [r for r in runs if all(r[k] == v for k, v in setting.items())]
        rate = statistics.median(r['examples_per_second'] for r in mine)
        reference = reference or rate
        aucs = [r['auc'] for r in mine]
        spread = statistics.stdev(aucs) if len(aucs) > 1 else 0.0
        print(f'| {setting["batch_size"]} | {setting["learning_rate"]} | {setting["steps_per_execution"]} | '
              f'{rate:,.0f} | {rate / reference:.2f} | {statistics.median(r["fit_seconds"] for r in mine):.1f} | '
              f'{statistics.median(r["trainer_seconds"] for r in mine):.1f} | '
              f'{statistics.median(r["steps_taken"] for r in mine):,.0f} | '
              f'{statistics.mean(aucs):.4f} ± {spread:.4f} |')
    print(f'\nworkspace {workspace}')


if __name__ == '__main__':
    main()
