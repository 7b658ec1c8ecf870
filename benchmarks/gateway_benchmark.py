"""Gateway overhead: clients straight to the embedded server, and through the gateway in front of it.

In one run, on the same server process and model (the latest version pushed
to workspace/serving_model, or a toy model when nothing was pushed):
- direct: client -> embedded server (`taxi-pipeline serve`), as TF Serving;
- gateway: client -> gateway (`taxi-pipeline serve --upstream`, with its
  request log on, as deployed) -> the same server over gRPC;
over REST (keep-alive HTTP/1.1) and gRPC, single-example predict requests:
latency p50/p99 of sequential requests, and throughput with one client and
with a few concurrent clients. Direct and gateway runs alternate within each
repeat; figures are medians over the repeats, with the gateway/direct ratio.
Every process (clients, gateway, server) shares this machine's cores, so
the throughput ratio includes the gateway's CPU use, as it would in a pod.

    .venv/bin/python benchmarks/gateway_benchmark.py [--model-base-path DIR] [--repeats 3] [--clients 4]
        [--no-request-log]
"""

import argparse
import json
import os
import statistics
import tempfile
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Keras 2 for tf.Transform's layer inside the SavedModel, before TensorFlow loads.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

from serving_benchmark import (ServerProcess, grpc_caller, rest_caller, throughput,  # noqa: E402  (same folder)
                               timed)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Workload:
    """A model directory and one single-example request for it, as REST JSON and as a gRPC PredictRequest."""

    def __init__(self, base_path, model_name, version, rest_body, inputs, signature=''):
        self.base_path, self.model_name, self.version = base_path, model_name, version
        self.rest_body = json.dumps(rest_body)
        self.grpc_request = predict_pb2.PredictRequest()
        self.grpc_request.model_spec.name = model_name
        self.grpc_request.model_spec.signature_name = signature
        for name, array in inputs.items():
            self.grpc_request.inputs[name].CopyFrom(tf.make_tensor_proto(array))


def taxi_workload(model_base_path):
    """The pushed taxi model and a held-out row of the taxi sample; None if nothing was pushed."""
    from components.baseline_model import latest_pushed_version
    from pipeline import data
    from taxi_model import contract
    if not os.path.isdir(model_base_path) or latest_pushed_version(model_base_path) is None:
        return None
    header, rows = data.read_rows(data.taxi_sample_path())
    row = dict(zip(header, rows[0]))
    body = {'signature_name': contract.PREDICT_RAW, 'instances': [contract.to_raw_instance(row)]}
    base_path = os.path.abspath(model_base_path)
    return Workload(base_path, os.path.basename(base_path), latest_pushed_version(model_base_path), body,
                    contract.raw_inputs([row]), contract.PREDICT_RAW)


class Scaler(tf.Module):
    """The toy model of tests/serving: y = 2x + 1, `unit` echoed."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='x'),
                                  tf.TensorSpec([None], tf.string, name='unit')])
    def scale(self, x, unit):
        return {'y': 2.0 * x + 1.0, 'unit_echo': unit}


def toy_workload(directory):
    base = os.path.join(directory, 'scaler')
    module = Scaler()
    tf.saved_model.save(module, os.path.join(base, '1'), signatures={'serving_default': module.scale})
    old = 1_600_000_000  # settled, so the server loads it at once
    for root, _, files in os.walk(base):
        for name in files:
            os.utime(os.path.join(root, name), (old, old))
    return Workload(base, 'scaler', '1', {'instances': [{'x': 1.5, 'unit': 'm'}]},
                    {'x': np.array([1.5], np.float32), 'unit': np.array([b'm'], dtype=object)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join(REPO, 'workspace', 'serving_model', 'chicago-taxi'))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--requests', type=int, default=300, help='latency samples per repeat')
    parser.add_argument('--seconds', type=float, default=3.0, help='duration of each throughput run')
    parser.add_argument('--clients', type=int, default=4, help='concurrent clients for the concurrent throughput')
    parser.add_argument('--no-request-log', action='store_true',
                        help="run the gateway without its request log (default: on, as deployed): the log's share")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix='gateway-benchmark-')
    workload = taxi_workload(args.model_base_path)
    if workload is None:
        print(f'no pushed model in {args.model_base_path} (run `make run` for the taxi model); using a toy model')
        workload = toy_workload(scratch)
    print(f'model {workload.base_path}/{workload.version}; {args.repeats} repeats, {args.requests} sequential '
          f'requests each, throughput over {args.seconds:.0f} s with 1 and {args.clients} clients; gateway request '
          f'log {"off" if args.no_request_log else "on"}')

    server = ServerProcess('--model-base-path', workload.base_path)
    gateway = None
    try:
        logging_args = [] if args.no_request_log else ['--request-log-dir', os.path.join(scratch, 'request_log')]
        gateway = ServerProcess('--upstream', f'127.0.0.1:{server.grpc_port}', '--model-base-path', workload.base_path,
                        *logging_args)
        path = f'/v1/models/{workload.model_name}:predict'
        targets = {'direct': server, 'gateway': gateway}
        rest = {name: (lambda s=s: rest_caller(s.rest_port, workload.rest_body, path)) for name, s in targets.items()}
        grpc_ = {name: (lambda s=s: grpc_caller(s.grpc_port, workload.grpc_request)) for name, s in targets.items()}
        # The same answer both ways, or the comparison means nothing.
        assert json.loads(rest['direct']()()) == json.loads(rest['gateway']()())
        assert grpc_['direct']()() == grpc_['gateway']()()

        results = {}
        for _ in range(args.repeats):
            for protocol, callers in (('REST', rest), ('gRPC', grpc_)):
                for name, make_call in callers.items():
                    results.setdefault((protocol, 'latency', name), []).append(timed(make_call(), args.requests))
                for clients in (1, args.clients):
                    for name, make_call in callers.items():
                        results.setdefault((protocol, clients, name), []).append(
                            throughput(make_call, clients, 1, args.seconds))
    finally:
        if gateway:
            gateway.stop()
        server.stop()

    print('\nLatency of sequential single-example requests, ms (median over repeats of each p50 / p99)')
    print(f'  {"":6}{"direct p50":>12}{"p99":>8}{"gateway p50":>13}{"p99":>8}{"added p50":>11}{"ratio p50":>11}')
    for protocol in ('REST', 'gRPC'):
        (d50, d99), (g50, g99) = ([statistics.median(run[i] for run in results[(protocol, 'latency', name)])
                                   for i in (0, 1)] for name in ('direct', 'gateway'))
        print(f'  {protocol:6}{d50:12.3f}{d99:8.3f}{g50:13.3f}{g99:8.3f}{g50 - d50:+11.3f}{g50 / d50:11.2f}')
    print('\nThroughput, single-example requests/s (median over repeats)')
    print(f'  {"":18}{"direct":>10}{"gateway":>10}{"ratio":>8}')
    for protocol in ('REST', 'gRPC'):
        for clients in (1, args.clients):
            direct, through = (statistics.median(results[(protocol, clients, name)]) for name in ('direct', 'gateway'))
            label = f'{protocol}, {clients} client{"s" if clients > 1 else ""}'
            print(f'  {label:18}{direct:10.0f}{through:10.0f}{through / direct:8.2f}')


if __name__ == '__main__':
    main()
