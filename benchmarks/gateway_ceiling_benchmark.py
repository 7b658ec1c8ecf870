"""The gateway's own ceiling: in front of an upstream that answers instantly.

gateway_benchmark.py measures the gateway in front of the embedded server, whose own cost
dominates. Here the upstream is a gRPC server that answers every call with the answer the
real server gave to the same request, recorded beforehand (no model runs), so what is left is
the gateway: its requests/s on this machine's cores, the latency it adds to the hop, and its
CPU time per request (read from /proc, so it does not depend on what shares the cores).

In one run, alternating within each repeat: gRPC straight to the instant upstream (the hop's
floor), and gRPC and REST through a gateway of one process and through one of two worker
processes (`--workers`, serving/workers.py); sequential requests for latency, 1 and N
concurrent clients for throughput; the gateways' request logs on, as deployed. The clients
run in this process and share the cores, so the rates are what this machine sustains end to
end; the CPU per request is the gateway's own (all its processes), from /proc.

    .venv/bin/python benchmarks/gateway_ceiling_benchmark.py [--model-base-path DIR] [--repeats 3] [--clients 8]
        [--workers 1 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent import futures

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')

import grpc  # noqa: E402
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,  # noqa: E402
                                     predict_pb2, prediction_service_pb2_grpc)

from gateway_benchmark import taxi_workload, toy_workload  # noqa: E402  (same folder)
from serving_benchmark import ServerProcess, free_port, grpc_caller, rest_caller, throughput, timed  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the instant upstream: recorded answers, replayed ---------------------------------------------

def record(server, workload, path):
    """The real server's answers to the calls the gateway makes for the workload, written to `path`."""
    channel = grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}')
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
    metadata.model_spec.name = workload.model_name
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = workload.model_name
    answers = {
        'predict': prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(workload.grpc_request,
                                                                                     timeout=30),
        'metadata': prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(metadata, timeout=30),
        'status': model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)}
    with open(path, 'w') as f:
        json.dump({k: v.SerializeToString().hex() for k, v in answers.items()}, f)
    channel.close()


def serve_instant(port, path):
    """Runs the instant upstream until killed (the `--serve-instant` mode of this script)."""
    with open(path) as f:
        recorded = {k: bytes.fromhex(v) for k, v in json.load(f).items()}
    predict = predict_pb2.PredictResponse.FromString(recorded['predict'])
    metadata = get_model_metadata_pb2.GetModelMetadataResponse.FromString(recorded['metadata'])
    status = get_model_status_pb2.GetModelStatusResponse.FromString(recorded['status'])

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            return predict

        def GetModelMetadata(self, request, context):  # noqa: N802
            return metadata

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802
            return status

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    server.add_insecure_port(f'127.0.0.1:{port}')
    server.start()
    print('instant upstream ready', flush=True)
    server.wait_for_termination()


class InstantUpstream:
    def __init__(self, path):
        self.grpc_port = free_port()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--serve-instant',
                                      str(self.grpc_port), path], stdout=subprocess.PIPE, text=True)
        if 'ready' not in self.proc.stdout.readline():
            raise RuntimeError(f'the instant upstream did not start (exit {self.proc.wait()})')

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def cpu_seconds(pid):
    """User plus system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join(REPO, 'workspace', 'serving_model', 'chicago-taxi'))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--requests', type=int, default=500, help='latency samples per repeat')
    parser.add_argument('--seconds', type=float, default=4.0, help='duration of each throughput run')
    parser.add_argument('--clients', type=int, default=8)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2],
                        help='gateway configurations to compare, by worker processes (default: 1 2)')
    parser.add_argument('--serve-instant', nargs=2, metavar=('PORT', 'FILE'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instant:
        return serve_instant(int(args.serve_instant[0]), args.serve_instant[1])

    scratch = tempfile.mkdtemp(prefix='gateway-ceiling-')
    workload = taxi_workload(args.model_base_path)
    if workload is None:
        print(f'no pushed model in {args.model_base_path} (run `make run` for the taxi model); using a toy model')
        workload = toy_workload(scratch)
    recorded = os.path.join(scratch, 'answers.json')
    server = ServerProcess('--model-base-path', workload.base_path)
    try:
        record(server, workload, recorded)
    finally:
        server.stop()
    print(f'model {workload.base_path}/{workload.version}, answers recorded; {os.cpu_count()} cores; '
          f'{args.repeats} repeats; throughput over {args.seconds:.0f} s with 1 and {args.clients} clients; '
          'gateway request log on')

    upstream = InstantUpstream(recorded)
    gateways = {}
    try:
        for workers in args.workers:
            gateways[workers] = ServerProcess(
                '--upstream', f'127.0.0.1:{upstream.grpc_port}', '--model-base-path', workload.base_path,
                '--request-log-dir', os.path.join(scratch, f'request_log_{workers}'), '--workers', str(workers))
        path = f'/v1/models/{workload.model_name}:predict'
        callers = {('gRPC', 'instant upstream'): (None, lambda: grpc_caller(upstream.grpc_port, workload.grpc_request))}
        for workers, gateway in gateways.items():
            label = f'gateway, {workers} worker{"s" if workers > 1 else ""}'
            callers[('gRPC', label)] = (gateway, lambda g=gateway: grpc_caller(g.grpc_port, workload.grpc_request))
            callers[('REST', label)] = (gateway, lambda g=gateway: rest_caller(g.rest_port, workload.rest_body, path))
        results = {}
        for _ in range(args.repeats):
            for name, (gateway, make_call) in callers.items():
                results.setdefault((name, 'latency'), []).append(timed(make_call(), args.requests))
                for clients in (1, args.clients):
                    pids = _pids(gateway.proc.pid) if gateway else []
                    before, started = sum(map(cpu_seconds, pids)), time.perf_counter()
                    rate = throughput(make_call, clients, 1, args.seconds)
                    spent = sum(map(cpu_seconds, pids)) - before
                    results.setdefault((name, clients), []).append(rate)
                    if gateway:
                        results.setdefault((name, clients, 'cpu'), []).append(
                            spent / (rate * (time.perf_counter() - started)) * 1000)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        upstream.stop()

    floor = statistics.median(run[0] for run in results[(('gRPC', 'instant upstream'), 'latency')])
    print('\nLatency of sequential single-example requests, ms (median over repeats of each p50 / p99)')
    print(f'  {"":34}{"p50":>8}{"p99":>8}')
    for name in callers:
        p50, p99 = (statistics.median(run[i] for run in results[(name, 'latency')]) for i in (0, 1))
        added = f'   {p50 - floor:+.3f} over the hop alone' if name[1] != 'instant upstream' else ''
        print(f'  {", ".join(name):34}{p50:8.3f}{p99:8.3f}{added}')
    print('\nThroughput, requests/s (median over repeats), and the gateway\'s CPU per request at '
          f'{args.clients} clients')
    print(f'  {"":34}{"1 client":>10}{f"{args.clients} clients":>12}{"CPU ms/request":>16}')
    for name in callers:
        one, many = (statistics.median(results[(name, c)]) for c in (1, args.clients))
        key = (name, args.clients, 'cpu')
        cpu = statistics.median(results[key]) if key in results else None
        print(f'  {", ".join(name):34}{one:10.0f}{many:12.0f}{f"{cpu:.3f}" if cpu else "":>16}')


def _pids(pid):
    """A gateway process and its worker processes."""
    children = []
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{task}/children') as f:
                children += [int(c) for c in f.read().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return [pid] + children


if __name__ == '__main__':
    main()
