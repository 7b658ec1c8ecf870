"""Explain next to predict: what an explanation costs, in one run, on one model.

For a single example and a batch of 100 taxi rows: the pushed SavedModel's
`explain` and `serving_raw` signatures in process, and the same two through
the embedded server over REST (keep-alive). Repeats alternate predict and
explain; figures are medians over the repeats of each run's p50/p99, with
the ratio explain / predict.

    .venv/bin/python benchmarks/explain_benchmark.py [--model-base-path workspace/serving_model/chicago-taxi]
"""

import argparse
import json
import os
import statistics
import sys

from serving_benchmark import MODEL_NAME, ServerProcess, latest_pushed, rest_caller, timed  # same folder: shared helpers

import tensorflow as tf  # noqa: E402  (serving_benchmark set the environment first)

from pipeline import data  # noqa: E402
from taxi_model import contract  # noqa: E402

SIGNATURES = {'predict': contract.PREDICT_RAW, 'explain': contract.EXPLAIN}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join('workspace', 'serving_model', MODEL_NAME))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--requests', type=int, default=300, help='latency samples per measurement')
    args = parser.parse_args()
    base_path, version = latest_pushed(args.model_base_path)
    model = tf.saved_model.load(os.path.join(base_path, version))
    if contract.EXPLAIN not in model.signatures:
        sys.exit(f'error: version {version} has no {contract.EXPLAIN} signature; run `make run` again')
    header, rows = data.read_rows(data.taxi_sample_path())
    rows = [dict(zip(header, r)) for r in rows[:100]]
    batches = {'single': rows[:1], 'batch 100': rows}
    print(f'model {base_path}/{version}; {args.repeats} repeats, {args.requests} requests each')

    results = {}
    server = ServerProcess('--model-base-path', base_path)
    try:
        for _ in range(args.repeats):
            for size, batch in batches.items():
                inputs = {k: tf.constant(v) for k, v in contract.raw_inputs(batch).items()}
                instances = [contract.to_raw_instance(r) for r in batch]
                for kind, signature in SIGNATURES.items():
                    function = model.signatures[signature]
                    results.setdefault(('in process', size, kind), []).append(
                        timed(lambda: function(**inputs), args.requests))
                    body = json.dumps({'signature_name': signature, 'instances': instances})
                    results.setdefault(('REST', size, kind), []).append(
                        timed(rest_caller(server.rest_port, body), args.requests))
    finally:
        server.stop()

    print('\nLatency, ms (median over repeats of p50 / p99); ratio = explain p50 / predict p50')
    for where in ('in process', 'REST'):
        for size in batches:
            figures = {kind: (statistics.median(p for p, _ in results[(where, size, kind)]),
                              statistics.median(p for _, p in results[(where, size, kind)])) for kind in SIGNATURES}
            (pp50, pp99), (ep50, ep99) = figures['predict'], figures['explain']
            print(f'  {where:<10} {size:<9}  predict p50 {pp50:7.3f} p99 {pp99:7.3f}   '
                  f'explain p50 {ep50:7.3f} p99 {ep99:7.3f}   ratio {ep50 / pp50:.2f}')


if __name__ == '__main__':
    main()
