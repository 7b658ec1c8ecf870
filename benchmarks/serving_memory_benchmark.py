"""Serving memory over many requests: does a replica's RSS stay flat?

Two measurements in one run:
- engine, side by side: N single-example calls of a signature, each engine in its own process,
  RSS sampled every N/10 calls: the server's engine (serving/servable.py: the SavedModel in a
  session, a C++ callable per signature, as TF Serving runs it) against the engine it replaced
  (tf.saved_model.load and the signature's concrete function called with tf.constant inputs),
  reproduced here as the reference;
- soak: `taxi-pipeline serve` with its request log on, N REST requests from concurrent clients,
  the server process's RSS sampled every N/10 requests.
Growth is reported per call (least squares over the samples after the first tenth) and in total.

    .venv/bin/python benchmarks/serving_memory_benchmark.py [--model-base-path DIR] [--calls 100000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import numpy as np  # noqa: E402

from gateway_benchmark import taxi_workload, toy_workload  # noqa: E402  (same folder)
from serving_benchmark import ServerProcess, rest_caller  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb(pid='self'):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmRSS')


def growth(samples):
    """(KB per call after the first tenth, MB from the first sample to the last)."""
    calls, mb = np.array([s[0] for s in samples[1:]], float), np.array([s[1] for s in samples[1:]])
    slope = np.polyfit(calls, mb, 1)[0] if len(calls) > 1 else 0.0
    return slope * 1024, samples[-1][1] - samples[0][1]


def run_engine(engine, path, signature, inputs_json, calls):
    """One engine in this process: prints JSON {samples: [[calls, rss_mb]], us_per_call}."""
    import tensorflow as tf
    inputs = {k: np.array(v, dtype=object if isinstance(v[0], str) else None)
              for k, v in json.loads(inputs_json).items()}
    inputs = {k: (v.astype(bytes).astype(object) if v.dtype == object else v) for k, v in inputs.items()}
    if engine == 'session':
        sys.path.insert(0, REPO)
        from serving.servable import Servable
        servable = Servable('m', 1, path)
        specs = servable.input_specs[signature]
        fed = {k: v if specs[k].dtype == tf.string else v.astype(specs[k].dtype.as_numpy_dtype)
               for k, v in inputs.items()}

        def call():
            servable.run_unbatched(signature, fed)
    else:
        function = tf.saved_model.load(path).signatures[signature]
        specs = function.structured_input_signature[1]

        def call():
            function(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
    for _ in range(200):
        call()
    samples, step, started = [(0, rss_mb())], max(calls // 10, 1), time.perf_counter()
    for i in range(1, calls + 1):
        call()
        if i % step == 0:
            samples.append((i, rss_mb()))
    print(json.dumps({'samples': samples, 'us_per_call': (time.perf_counter() - started) / calls * 1e6}))


def soak(workload, calls, clients, scratch):
    server = ServerProcess('--model-base-path', workload.base_path, '--request-log-dir',
                           os.path.join(scratch, 'request_log'))
    path = f'/v1/models/{workload.model_name}:predict'
    try:
        done, lock, samples = [0], threading.Lock(), [(0, rss_mb(server.proc.pid))]
        step = max(calls // 10, 1)

        def client():
            call = rest_caller(server.rest_port, workload.rest_body, path)
            while True:
                with lock:
                    if done[0] >= calls:
                        return
                    done[0] += 1
                    if done[0] % step == 0:
                        samples.append((done[0], rss_mb(server.proc.pid)))
                call()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return samples, calls / (time.perf_counter() - started)
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join(REPO, 'workspace', 'serving_model', 'chicago-taxi'))
    parser.add_argument('--calls', type=int, default=100_000)
    parser.add_argument('--clients', type=int, default=4)
    parser.add_argument('--engine', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        engine, path, signature, inputs_json = args.engine
        return run_engine(engine, path, signature, inputs_json, args.calls)

    scratch = tempfile.mkdtemp(prefix='serving-memory-')
    workload = taxi_workload(args.model_base_path)
    if workload is None:
        print(f'no pushed model in {args.model_base_path} (run `make run` for the taxi model); using a toy model')
        workload = toy_workload(scratch)
    body = json.loads(workload.rest_body)
    (instance,) = body['instances']
    inputs = {k: [v] for k, v in instance.items()} if isinstance(instance, dict) else {'x': [instance]}
    signature = body.get('signature_name') or 'serving_default'
    path = os.path.join(workload.base_path, str(workload.version))
    print(f'model {path}, signature {signature}; {args.calls:,} calls per measurement')

    print('\nEngine, single-example calls in process')
    print(f'  {"":34}{"us/call":>9}{"RSS start":>11}{"end":>8}{"KB/call":>10}')
    for engine, label in (('session', 'session + C++ callable (now)'), ('eager', 'concrete function (before)')):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), '--calls', str(args.calls), '--engine',
                              engine, path, signature, json.dumps(inputs)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        per_call, _ = growth(result['samples'])
        print(f'  {label:34}{result["us_per_call"]:9.0f}{result["samples"][0][1]:10.0f}M'
              f'{result["samples"][-1][1]:7.0f}M{per_call:10.2f}')

    samples, rate = soak(workload, args.calls, args.clients, scratch)
    per_call, total = growth(samples)
    print(f'\nSoak: the server with its request log, {args.calls:,} REST requests from {args.clients} clients '
          f'({rate:,.0f}/s)')
    print('  RSS MB by requests: ' + ', '.join(f'{n // 1000}k {mb:.0f}' for n, mb in samples))
    print(f'  growth after the first tenth: {per_call:.3f} KB/request; first to last sample {total:+.0f} MB')


if __name__ == '__main__':
    main()
