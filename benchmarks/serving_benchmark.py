"""Serving latency and throughput: the embedded server next to the in-process model.

In one run, on the same pushed model and the same taxi rows:
- in process: the SavedModel's `serving_raw` signature called directly
  (single-example latency; examples/s at batch 1000);
- the embedded server in its own process (`taxi-pipeline serve`), measured
  from this process over loopback: single-example round trip over REST
  (keep-alive HTTP/1.1) and gRPC; throughput with concurrent clients, without
  and with server-side batching (serving/config/batching.config).
Round trips include the client's own work, so they bound the server's
arrival-to-response time from above. Latency figures are medians over the
repeats of each run's p50/p99.

    .venv/bin/python benchmarks/serving_benchmark.py [--model-base-path workspace/serving_model/chicago-taxi]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Keras 2 for tf.Transform's layer inside the SavedModel, before TensorFlow loads.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from pipeline import data  # noqa: E402
from pipeline.config import PIPELINE_NAME as MODEL_NAME  # noqa: E402
from serving import METRICS_PATH  # noqa: E402
from taxi_model import contract  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def latest_pushed(model_base_path):
    """(absolute base path, newest version) of a push destination; exits with a hint if it is empty."""
    from components.baseline_model import latest_pushed_version
    version = latest_pushed_version(model_base_path)
    if version is None:
        sys.exit(f'error: no pushed model in {model_base_path}; run `make run` first')
    return os.path.abspath(model_base_path), version


def percentiles(seconds):
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(call, n):
    for _ in range(20):  # warm the path (connections, caches)
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ServerProcess:
    """`taxi-pipeline serve ARGS...` on free ports, in its own process; returns once it serves."""

    def __init__(self, *args):
        self.rest_port, self.grpc_port = free_port(), free_port()
        command = [os.path.join(VENV_BIN, 'taxi-pipeline'), 'serve', '--rest-port', str(self.rest_port),
                   '--grpc-port', str(self.grpc_port), *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = []
        for line in self.proc.stdout:
            output.append(line)
            if 'Press Ctrl-C' in line:
                break
        else:
            raise RuntimeError(f'{" ".join(command)} did not start (exit {self.proc.wait()}): {"".join(output[-5:])}')
        self.banner = ''.join(output)
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def latency_buckets(rest_port, protocol):
    """Cumulative counts of the server's own arrival-to-response histogram, by bucket bound."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f'http://127.0.0.1:{rest_port}{METRICS_PATH}') as response:
        text = response.read().decode()
    buckets = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == 'tfserving_request_latency_seconds_bucket' and sample.labels['protocol'] == protocol
                    and sample.labels['api'] == 'predict'):
                bound = float(sample.labels['le'])
                buckets[bound] = buckets.get(bound, 0) + sample.value
    return buckets


def bucket_quantile(before, after, q):
    """Prometheus's histogram_quantile over the requests between two snapshots, in ms."""
    counts = sorted((bound, after[bound] - before.get(bound, 0)) for bound in after)
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in counts:
        if count >= rank:
            if bound == float('inf'):
                return lower * 1000
            return (lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)) * 1000
        lower, below = bound, count
    return lower * 1000


def server_side(rest_port, protocol, measure):
    """Runs `measure` and returns its result with the server's own p50/p99 for it."""
    before = latency_buckets(rest_port, protocol)
    result = measure()
    after = latency_buckets(rest_port, protocol)
    return result, (bucket_quantile(before, after, 0.5), bucket_quantile(before, after, 0.99))


def rest_caller(port, body, path=f'/v1/models/{MODEL_NAME}:predict'):
    """A function that POSTs `body` over one kept-alive connection and returns the answer's bytes."""
    conn = http.client.HTTPConnection('127.0.0.1', port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {'Content-Type': 'application/json'}

    def call():
        conn.request('POST', path, body, headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(payload[:200])
        return payload
    return call


def grpc_request(rows):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, contract.PREDICT_RAW
    for name, tensor in contract.raw_inputs(rows).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
    return request


def grpc_caller(port, request):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f'127.0.0.1:{port}'))
    return lambda: stub.Predict(request, timeout=30)


def throughput(make_call, clients, examples_per_call, seconds):
    """Examples per second with `clients` threads calling back to back."""
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()
    stop, counts, errors = threading.Event(), [0] * clients, []

    def loop(i):
        while not stop.is_set():
            try:
                calls[i]()
                counts[i] += 1
            except Exception as e:
                errors.append(e)
                return
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f'{len(errors)} failed requests, e.g. {errors[0]}')
    return sum(counts) * examples_per_call / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join('workspace', 'serving_model', MODEL_NAME))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--requests', type=int, default=500, help='latency samples per repeat')
    parser.add_argument('--seconds', type=float, default=5.0, help='duration of each throughput run')
    parser.add_argument('--clients', type=int, default=8)
    parser.add_argument('--batching-parameters-file', default=os.path.join(REPO, 'serving', 'config', 'batching.config'),
                        help='batching for the throughput runs (default: the deployment\'s, %(default)s)')
    args = parser.parse_args()
    base_path, version = latest_pushed(args.model_base_path)
    header, rows = data.read_rows(data.taxi_sample_path())
    rows = [dict(zip(header, r)) for r in rows[:1000]]
    print(f'model {base_path}/{version}; {args.repeats} repeats, {args.requests} requests each, '
          f'{args.clients} concurrent clients for throughput')

    model = tf.saved_model.load(os.path.join(base_path, version))
    serve_raw = model.signatures[contract.PREDICT_RAW]
    one, thousand = ({k: tf.constant(v) for k, v in contract.raw_inputs(batch).items()} for batch in (rows[:1], rows))
    results = {}

    def record(name, value):
        results.setdefault(name, []).append(value)

    for repeat in range(args.repeats):
        record('in-process single', timed(lambda: serve_raw(**one), args.requests))
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            serve_raw(**thousand)
            n += 1
        record('in-process batch 1000 ex/s', n * 1000 / (time.perf_counter() - start))

    single_json = json.dumps({'signature_name': contract.PREDICT_RAW, 'instances': [contract.to_raw_instance(rows[0])]})
    hundred_json = json.dumps({'signature_name': contract.PREDICT_RAW,
                               'instances': [contract.to_raw_instance(r) for r in rows[:100]]})
    single_grpc, hundred_grpc, thousand_grpc = grpc_request(rows[:1]), grpc_request(rows[:100]), grpc_request(rows)
    for batching in (False, True):
        server = ServerProcess('--model-base-path', base_path, *(
            ['--enable-batching', '--batching-parameters-file', args.batching_parameters_file] if batching else []))
        tag = 'batching' if batching else 'no batching'
        try:
            for repeat in range(args.repeats):
                if not batching:
                    for name, protocol, call in (
                            ('REST single', 'rest', rest_caller(server.rest_port, single_json)),
                            ('gRPC single', 'grpc', grpc_caller(server.grpc_port, single_grpc))):
                        round_trip, in_server = server_side(server.rest_port, protocol,
                                                            lambda: timed(call, args.requests))
                        record(name, round_trip)
                        record(f'{name}, in server', in_server)
                for label, factory, size in (
                        ('gRPC 1 ex/request', lambda: grpc_caller(server.grpc_port, single_grpc), 1),
                        ('gRPC 100 ex/request', lambda: grpc_caller(server.grpc_port, hundred_grpc), 100),
                        ('gRPC 1000 ex/request', lambda: grpc_caller(server.grpc_port, thousand_grpc), 1000),
                        ('REST 100 ex/request', lambda: rest_caller(server.rest_port, hundred_json), 100)):
                    record(f'{label}, {args.clients} clients, {tag} ex/s',
                           throughput(factory, args.clients, size, args.seconds))
        finally:
            server.stop()

    print('\nLatency, ms (median over repeats of p50 / p99)')
    base_p50 = statistics.median(p50 for p50, _ in results['in-process single'])
    print('  (round trips are measured by the client; "in server" is arrival-to-response from the server\'s own')
    print('   latency histogram, interpolated within its buckets as Prometheus\'s histogram_quantile does)')
    for name in ('in-process single', 'REST single', 'REST single, in server', 'gRPC single',
                 'gRPC single, in server'):
        p50 = statistics.median(p for p, _ in results[name])
        p99 = statistics.median(p for _, p in results[name])
        print(f'  {name:<24} p50 {p50:7.3f}  p99 {p99:7.3f}  p50 overhead vs in-process {p50 - base_p50:+.3f}')
    print('\nThroughput, examples/s (median over repeats)')
    reference = statistics.median(results['in-process batch 1000 ex/s'])
    for name, values in results.items():
        if name.endswith('ex/s'):
            value = statistics.median(values)
            print(f'  {name:<52} {value:10.0f}  ratio to in-process batch 1000: {value / reference:.2f}')


if __name__ == '__main__':
    main()
