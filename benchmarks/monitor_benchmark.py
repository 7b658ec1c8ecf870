"""The monitor over a million logged requests: time and peak memory, next to
TFDV's own way to get statistics from TFRecords (a Beam pipeline), in one run.

Logs are written in the server's format (serving/telemetry.py) from the pushed
model's answers to resampled taxi rows: half in the monitored window, half in
the one before, so skew, drift and prediction drift are all computed; the
examples of one request in the window (DISTINCT of them) have feedback (their
tips), so live metrics are joined and computed too, and the pass is recorded
in a fresh ML Metadata store.
`taxi-pipeline monitor` runs as its own process; TFDV's
`generate_statistics_from_tfrecord` (DirectRunner) reads the same files.
Figures are medians over the repeats; peak memory is the child process's max RSS.

    .venv/bin/python benchmarks/monitor_benchmark.py [--requests 1000000] [--repeats 1]
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import tensorflow as tf  # noqa: E402

from pipeline import data  # noqa: E402
from pipeline.config import PIPELINE_NAME  # noqa: E402
from serving import feedback  # noqa: E402
from serving.telemetry import log_examples  # noqa: E402
from taxi_model import contract  # noqa: E402

from serving_benchmark import latest_pushed  # noqa: E402  (same folder: shared helpers)

VENV_BIN = os.path.dirname(sys.executable)
HOUR = 3600 * 1_000_000
END = 1_800_000_000 * 1_000_000
DISTINCT = 50_000  # distinct logged examples; files repeat them up to --requests


def write_logs(model_dir, version, directory, requests):
    header, rows = data.read_rows(data.taxi_sample_path())
    rows = [dict(zip(header, r)) for r in random.Random(0).choices(rows, k=DISTINCT)]
    model = tf.saved_model.load(model_dir)
    inputs = contract.raw_inputs(rows)
    outputs = {k: v.numpy() for k, v in model.signatures[contract.PREDICT_RAW](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}
    missing = json.loads(contract.missing_values_json())[contract.PREDICT_RAW]
    files = max(2, requests // DISTINCT)
    for half, at in (('previous', END - HOUR - 60_000_000), ('current', END - 60_000_000)):
        for i in range(files // 2):
            # A request id per file, so feedback names one example.
            meta = {'model_name': PIPELINE_NAME, 'model_version': version, 'signature_name': contract.PREDICT_RAW,
                    'request_id': f'{half}-{i:04d}', 'timestamp_micros': at}
            records = [e.SerializeToString() for e in log_examples((meta, inputs, outputs, None, missing))]
            with tf.io.TFRecordWriter(os.path.join(directory, f'requests-{half}-{i:04d}.tfrecord')) as writer:
                for record in records:
                    writer.write(record)
    observed = feedback.parse_all({'request_id': 'current-0000', 'example': i, 'tips': float(row['tips'])}
                                  for i, row in enumerate(rows) if row['tips'])
    # Received within the monitored hour: a pass counts the feedback that arrived in its window.
    feedback.now_micros = lambda: END - HOUR // 2
    feedback.FeedbackStore(os.path.join(directory, os.pardir, 'feedback')).append(observed, source='benchmark')
    return files * DISTINCT


def timed_child(command):
    """(seconds, peak RSS in GB of its process tree) of a command run in its own process."""
    import psutil
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [watched] + watched.children(recursive=True)))
        except psutil.Error:  # a child ended between listing and reading
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if process.returncode not in (0, 3):  # 3: the monitor raised alerts
        raise RuntimeError(f'{command[:3]} failed ({process.returncode}): {process.stderr.read()[-1000:]}')
    return seconds, peak / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join('workspace', 'serving_model', PIPELINE_NAME))
    parser.add_argument('--requests', type=int, default=1_000_000)
    parser.add_argument('--repeats', type=int, default=1)
    args = parser.parse_args()
    base, version = latest_pushed(args.model_base_path)
    with tempfile.TemporaryDirectory() as work:
        logs = os.path.join(work, 'logs')
        os.makedirs(logs)
        start = time.perf_counter()
        total = write_logs(os.path.join(base, version), int(version), logs, args.requests)
        size = sum(os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs)) / 1e9
        print(f'{total:,} logged requests ({size:.2f} GB, half in the monitored hour) written in '
              f'{time.perf_counter() - start:.0f} s; version {version}')
        monitor = [os.path.join(VENV_BIN, 'taxi-pipeline'), 'monitor', '--request-log-dir', logs,
                   '--model-base-path', base, '--window', '1h', '--end', '2027-01-15T08:00:00',
                   '--report-dir', os.path.join(work, 'reports'), '--feedback-dir', os.path.join(work, 'feedback'),
                   '--metadata-path', os.path.join(work, 'metadata.sqlite')]
        tfdv_beam = [sys.executable, '-c', 'import sys, tensorflow_data_validation as tfdv; '
                     'tfdv.generate_statistics_from_tfrecord(sys.argv[1], pipeline_options=None)',
                     os.path.join(logs, '*.tfrecord')]
        results = {'taxi-pipeline monitor (both windows)': [], 'TFDV generate_statistics_from_tfrecord (Beam)': []}
        for _ in range(args.repeats):
            results['taxi-pipeline monitor (both windows)'].append(timed_child(monitor))
            results['TFDV generate_statistics_from_tfrecord (Beam)'].append(timed_child(tfdv_beam))
    print(f'\n{total:,} requests, {args.repeats} repeat(s), medians:')
    reference = statistics.median(s for s, _ in results['TFDV generate_statistics_from_tfrecord (Beam)'])
    for name, values in results.items():
        seconds = statistics.median(s for s, _ in values)
        print(f'  {name:<48} {seconds:7.1f} s  {total / seconds:10,.0f} requests/s  peak RSS {values[-1][1]:.2f} GB'
              f'  ratio to TFDV-on-Beam {seconds / reference:.2f}')


if __name__ == '__main__':
    main()
