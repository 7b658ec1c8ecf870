"""The request log's throughput: can it keep up with the server?

In one run, on records shaped as the taxi model's `serving_raw` requests (14 raw features, the
four outputs, declared missing-value markers), for requests of 1 and 100 examples:
- encoding: the reference per-example encoding (`serving.telemetry.log_examples`) against the
  column-wise encoder the writer uses (`serving.request_log.encode`), examples/s on one core;
- the writer end to end: a RequestLogger fed as fast as one thread can call `log()`, until every
  record is in a completed file; examples/s, and whether anything was dropped.
Compare with the server's own rate in docs/performance.md#serving (gRPC, 100 examples per
request: 64,800-87,600 examples/s on 2 cores).

    .venv/bin/python benchmarks/request_log_benchmark.py [--seconds 5] [--repeats 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from serving import request_log  # noqa: E402
from serving.telemetry import Metrics, log_examples  # noqa: E402

FLOATS = ('trip_miles', 'fare', 'pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude')
INTS = ('trip_seconds', 'trip_start_hour', 'trip_start_day', 'trip_start_month', 'pickup_community_area',
        'dropoff_community_area')
STRINGS = ('payment_type', 'company')
MISSING = {'trip_seconds': 'negative', 'pickup_community_area': 'negative', 'dropoff_community_area': 'negative',
           'company': 'empty', 'pickup_latitude': 'nan', 'pickup_longitude': 'nan', 'dropoff_latitude': 'nan',
           'dropoff_longitude': 'nan'}


def record(n, seed):
    rng = np.random.default_rng(seed)
    inputs = {name: rng.random(n).astype(np.float32) * 50 for name in FLOATS}
    inputs.update({name: rng.integers(-1, 80, n) for name in INTS})
    inputs['payment_type'] = np.array([b'Cash', b'Credit Card'] * n, dtype=object)[:n]
    inputs['company'] = np.array([b'', b'Flash Cab', b'Taxi Affiliation Services'] * n, dtype=object)[:n]
    outputs = {'probabilities': rng.random(n).astype(np.float32), 'is_outlier': rng.random(n) > 0.9,
               'outlier_score': rng.random(n).astype(np.float32),
               'flagged_features': np.array([b'', b'fare'] * n, dtype=object)[:n]}
    meta = {'model_name': 'chicago-taxi', 'model_version': 1796554063, 'signature_name': 'serving_raw',
            'request_id': f'{seed:032x}', 'timestamp_micros': 1_796_554_063_000_000 + seed}
    return meta, inputs, outputs, None, MISSING


def encode_rate(encode, records, seconds):
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += sum(len(encode(r)) for r in records)
    return done / (time.perf_counter() - start)


def writer_rate(n, seconds, scratch):
    directory = tempfile.mkdtemp(dir=scratch)
    metrics = Metrics()
    logger = request_log.RequestLogger(directory, metrics)
    meta, inputs, outputs, _, missing = record(n, 0)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        logger.log('chicago-taxi', 1, 'serving_raw', f'{calls:032x}', inputs, outputs, missing=missing)
        calls += 1
    logger.close(timeout=600)
    elapsed = time.perf_counter() - start
    # Counted by the records' length headers (reading every record back through tf.data would take longer).
    written = sum(request_log._complete_prefix(os.path.join(directory, name))[1] for name in os.listdir(directory))
    dropped = sum(s.value for family in metrics.registry.collect() for s in family.samples
                  if s.name == 'tfserving_request_log_dropped_total')
    return written / elapsed, written == calls * n and not dropped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix='request-log-benchmark-')
    sizes = (1, 100)
    results = {}
    for _ in range(args.repeats):
        for n in sizes:
            records = [record(n, seed) for seed in range(max(1, 512 // n))]
            results.setdefault(('reference', n), []).append(encode_rate(
                lambda r: [e.SerializeToString() for e in log_examples(r)], records, args.seconds))
            # The writer encodes what it takes from the queue at once: up to 512 records.
            results.setdefault(('column-wise', n), []).append(encode_rate(
                lambda rs: request_log.encode(rs), [records], args.seconds))
            rate, complete = writer_rate(n, args.seconds, scratch)
            results.setdefault(('writer', n), []).append(rate)
            results.setdefault(('complete', n), []).append(complete)
    print(f'Request log, examples/s (median of {args.repeats} repeats; taxi serving_raw records)')
    print(f'  {"":40}' + ''.join(f'{f"{n} per request":>18}' for n in sizes))
    for label, key in (('encode, per example (reference)', 'reference'), ('encode, column-wise (the writer)',
                                                                          'column-wise'),
                       ('writer end to end, one thread logging', 'writer')):
        print(f'  {label:40}' + ''.join(f'{statistics.median(results[(key, n)]):18,.0f}' for n in sizes))
    ratios = [statistics.median(results[('column-wise', n)]) / statistics.median(results[('reference', n)])
              for n in sizes]
    print(f'  {"column-wise / reference":40}' + ''.join(f'{r:18.1f}' for r in ratios))
    print('  every logged example written, none dropped: ' + ', '.join(
        f'{n} per request {all(results[("complete", n)])}' for n in sizes))


if __name__ == '__main__':
    main()
