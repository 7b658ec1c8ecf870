"""The pipeline at scale: per-component time, rows/s and peak memory at 15k, 150k and 1.5M rows, next to
the physical limits of this machine measured in the same run.

For each size: a span drawn deterministically from the taxi sample (`prepare-data --rows N --seed 1`), a
fresh `taxi-pipeline run` in its own process (wall time, peak RSS of its process tree), then each
component's time from ML Metadata, and the cores it kept busy (the process tree's CPU seconds in its window,
sampled five times a second, over its seconds). The limits, measured on the same data: Python's csv module
parsing the span, `tf.io.decode_csv` on it, the pushed model scoring the eval split in process (what
ExampleGen and the Evaluator could approach), and the machine's cores: the run's CPU seconds over them are
the least time the same work could take here. Prints every measurement, then medians and ratios.

    .venv/bin/python benchmarks/scale_benchmark.py [--rows 15002 150000 1500000] [--repeats 1]
"""

import argparse
import bisect
import csv
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_benchmark import VENV_BIN, measure  # noqa: E402

SAMPLE_ROWS = 15002
# The rows each data-parallel component's rate is per: the span's (read), or those the Evaluator scored.
RATE_OF = {'CsvExampleGen': 'read', 'StatisticsGen': 'read', 'Transform': 'read', 'Evaluator': 'evaluated'}


def prepare(workspace: str, rows: int) -> str:
    from pipeline import data
    seed = None if rows == SAMPLE_ROWS else 1
    return data.prepare_sample(os.path.join(workspace, 'data'), rows=rows, seed=seed)


def csv_module_rate(path: str) -> float:
    started = time.perf_counter()
    with open(path, newline='') as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    return rows / (time.perf_counter() - started)


def decode_csv_rate(path: str) -> float:
    import tensorflow as tf
    with open(path) as f:
        header = f.readline().rstrip('\n').split(',')
    dataset = tf.data.TextLineDataset(path).skip(1).batch(10_000)
    defaults = [['']] * len(header)  # every column optional, read as text
    started = time.perf_counter()
    rows = sum(int(tf.shape(tf.io.decode_csv(batch, defaults)[0])[0]) for batch in dataset)
    return rows / (time.perf_counter() - started)


def scoring_rate(examples_uri: str, model_dir: str) -> float:
    """The pushed model's serving signature over the eval split's serialized tf.Examples, in process."""
    import tensorflow as tf
    files = tf.io.gfile.glob(os.path.join(examples_uri, 'Split-eval', '*'))
    batches = list(tf.data.TFRecordDataset(files, compression_type='GZIP').batch(10_000))
    serve = tf.saved_model.load(model_dir).signatures['serving_default']
    name = next(iter(serve.structured_input_signature[1]))
    serve(**{name: batches[0][:10]})  # traced once before timing
    started = time.perf_counter()
    rows = sum(int(tf.shape(batch)[0]) for batch in batches if serve(**{name: batch}) is not None)
    return rows / (time.perf_counter() - started)


def cpu_seconds(samples, start: float, end: float) -> float:
    """CPU seconds used between `start` and `end` (epoch seconds), from cumulative (time, CPU) samples,
    interpolated linearly between the two samples around each end."""
    times = [t for t, _ in samples]

    def used(at: float) -> float:
        i = bisect.bisect_left(times, at)
        if i == 0:
            return samples[0][1] if samples else 0.0
        if i == len(samples):
            return samples[-1][1]
        (t0, c0), (t1, c1) = samples[i - 1], samples[i]
        return c0 + (c1 - c0) * (at - t0) / max(t1 - t0, 1e-9)
    return max(0.0, used(end) - used(start))


def one_size(rows: int):
    from pipeline import run_summary
    from pipeline.config import PipelineConfig
    with tempfile.TemporaryDirectory() as workspace:
        span_csv = prepare(workspace, rows)
        cpu = []
        wall, rss, code = measure([os.path.join(VENV_BIN, 'taxi-pipeline'), 'run', '--workspace', workspace],
                                  cpu=cpu)
        config = PipelineConfig.for_workspace(workspace)
        summary = run_summary.summarize_latest_run(config, wall_seconds=wall)
        limits = {'csv module': csv_module_rate(span_csv), 'tf.io.decode_csv': decode_csv_rate(span_csv)}
        examples = summary.outputs.get('CsvExampleGen', {}).get('examples')
        if examples and summary.pushed_to:
            limits['model scoring'] = scoring_rate(examples, summary.pushed_to)
        return {'wall': wall, 'rss_mib': rss, 'exit': code, 'rows': summary.rows,
                'components': {c.node_id: c.seconds for c in summary.components},
                'cpu': {c.node_id: cpu_seconds(cpu, c.started, c.started + c.seconds) for c in summary.components},
                'cpu_total': cpu[-1][1] if cpu else 0.0, 'limits': limits,
                'auc': summary.metrics.get('auc'), 'training': summary.training}


def report(rows: int, runs) -> None:
    wall = statistics.median(r['wall'] for r in runs)
    rss = statistics.median(r['rss_mib'] for r in runs)
    first = runs[0]
    print(f'\n{rows:,} rows: {wall:.1f} s end to end (median of {len(runs)}), peak RSS {rss:,.0f} MiB, '
          f'AUC {first["auc"] or float("nan"):.4f}, exit {first["exit"]}')
    training, train_rows = first.get('training') or {}, first['rows'].get('train')
    if training.get('batch_size') and train_rows:
        print(f'  training: {training["steps"]:,} steps of {training["batch_size"]}, '
              f'{training["steps"] * training["batch_size"] / train_rows:.2f} epochs of {train_rows:,} rows; '
              f'{training.get("taken", training["steps"]):,} taken, {training.get("kept", training["steps"]):,} kept')
    counted = {'read': rows, **first['rows']}
    eval_rows = counted.get('evaluated') or counted.get('eval') or 1
    for name in first['components']:
        seconds = statistics.median(r['components'].get(name, 0.0) for r in runs)
        cores = statistics.median(r['cpu'].get(name, 0.0) / max(r['components'].get(name, 0.0), 1e-9)
                                  for r in runs)
        rate = f'{counted[RATE_OF[name]] / seconds:>10,.0f} rows/s' if name in RATE_OF and seconds > 0 else ''
        busy = f'{cores:4.2f} cores' if seconds >= 1 else ' ' * 10
        print(f'  {name:<20} {seconds:7.1f} s  {100 * seconds / wall:5.1f}%  {busy}  {rate}')
    cpu_total = statistics.median(r['cpu_total'] for r in runs)
    machine = os.cpu_count() or 1
    print(f'  the run: {cpu_total:.0f} CPU seconds, {cpu_total / wall:.2f} cores on average; on {machine} cores '
          f'the same work takes at least {cpu_total / machine:.1f} s')
    limits = {k: statistics.median(r['limits'][k] for r in runs if k in r['limits']) for k in first['limits']}
    example_gen = statistics.median(r['components'].get('CsvExampleGen', 0.0) for r in runs)
    evaluator = statistics.median(r['components'].get('Evaluator', 0.0) for r in runs)
    for name, rate in limits.items():
        print(f'  limit: {name:<18} {rate:>10,.0f} rows/s')
    if example_gen:
        print(f'  ExampleGen at {rows / example_gen / limits["csv module"]:.3f} of the csv module\'s rate, '
              f'{rows / example_gen / limits["tf.io.decode_csv"]:.3f} of decode_csv\'s')
    if evaluator and 'model scoring' in limits:
        print(f'  Evaluator at {eval_rows / evaluator / limits["model scoring"]:.4f} of the model\'s scoring rate')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, nargs='+', default=[SAMPLE_ROWS, 150_000, 1_500_000])
    parser.add_argument('--repeats', type=int, default=1)
    args = parser.parse_args()
    for rows in args.rows:
        runs = []
        for i in range(args.repeats):
            runs.append(one_size(rows))
            print(f'[{rows:,} rows, {i + 1}/{args.repeats}] {runs[-1]["wall"]:.1f} s, '
                  f'{runs[-1]["rss_mib"]:,.0f} MiB', flush=True)
        report(rows, runs)


if __name__ == '__main__':
    main()
