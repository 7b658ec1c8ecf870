"""Rollback under load: the registry's warm label move next to a rollback that must load the version.

In one run, the embedded server serves a model config with two versions of
the pushed model while client threads send unaddressed gRPC predict requests
(the traffic split sends them to `stable`), and `stable` moves back:
- warm (what `taxi-pipeline models rollback` does): the previous stable
  version is loaded under the `rollback` label, so the label moves between
  loaded versions in one config write;
- cold (the reference, `serving-labels` to a version no label kept): the
  config first loads the version, then, once it is AVAILABLE, moves the label.
For each, the time from the first config write until every client gets the
restored version, the requests answered meanwhile, and the failed ones.
The server re-reads its config every --config-poll seconds (TF Serving's
--model_config_file_poll_wait_seconds; 60 in serving/k8s/deployment.yaml),
which bounds the warm switch; the cold one adds a model load.

    .venv/bin/python benchmarks/release_benchmark.py [--model-base-path workspace/serving_model/chicago-taxi]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
warnings.simplefilter('ignore')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.serving_benchmark import latest_pushed  # noqa: E402
from pipeline import data  # noqa: E402
from pipeline.config import PIPELINE_NAME as MODEL_NAME  # noqa: E402
from serving import labels, traffic  # noqa: E402
from serving.client import GrpcClient  # noqa: E402
from serving.server import ModelServer, ServerSettings  # noqa: E402
from taxi_model import contract  # noqa: E402


class Load:
    """Client threads sending one-row gRPC predict requests; every answer's version and every failure."""

    def __init__(self, port, rows, threads):
        self.stop = threading.Event()
        self.answers, self.failures, self.lock = [], [], threading.Lock()
        self.inputs = [contract.inputs_for(contract.PREDICT_RAW, [row]) for row in rows]
        self.threads = [threading.Thread(target=self._loop, args=(port,), daemon=True) for _ in range(threads)]

    def _loop(self, port):
        client = GrpcClient('127.0.0.1', port, model_name=MODEL_NAME)
        i = 0
        while not self.stop.is_set():
            try:
                version = client.predict(self.inputs[i % len(self.inputs)], signature=contract.PREDICT_RAW).model_version
                with self.lock:
                    self.answers.append((time.monotonic(), version))
            except Exception as e:  # what the benchmark counts
                with self.lock:
                    self.failures.append(repr(e))
            i += 1
        client.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def switch(server, load, config, final, restored, timeout=120.0):
    """Writes the labels `final` as the registry does (a version no label had is loaded first, and the
    label moves once the server reports it AVAILABLE); (seconds from the first write until the last
    answers all came from `restored`, answers meanwhile, failures meanwhile)."""
    answered, failed = len(load.answers), len(load.failures)
    start = time.monotonic()
    if labels.write_labels(config, final, MODEL_NAME):
        while any(server.registry.status(MODEL_NAME).get(v) is None or
                  server.registry.status(MODEL_NAME)[v].state != 'AVAILABLE' for v in final.values()):
            if time.monotonic() - start > timeout:
                raise SystemExit(f'error: versions {sorted(final.values())} did not load within {timeout:.0f} s')
            time.sleep(0.02)
        labels.write_labels(config, final, MODEL_NAME)
    while time.monotonic() - start < timeout:
        recent = load.answers[-len(load.threads) * 4:]
        if recent and recent[0][0] > start and all(version == restored for _, version in recent):
            switched = next(t for t, version in load.answers[answered:] if version == restored)
            return switched - start, len(load.answers) - answered, len(load.failures) - failed
        time.sleep(0.02)
    raise SystemExit(f'error: traffic did not move to version {restored} within {timeout:.0f} s')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-base-path', default=os.path.join('workspace', 'serving_model', MODEL_NAME))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--config-poll', type=float, default=1.0)
    args = parser.parse_args()
    source_base, version = latest_pushed(args.model_base_path)
    header, rows = data.read_rows(data.taxi_sample_path())
    rows = [dict(zip(header, row)) for row in rows[:200]]
    with tempfile.TemporaryDirectory() as root:
        base = os.path.join(root, MODEL_NAME)
        old, new = 1, 2  # two copies of the pushed model: which one answers is what is measured
        for v in (old, new):
            shutil.copytree(os.path.join(source_base, str(version)), os.path.join(base, str(v)))
        config = os.path.join(root, 'models.config')
        labels.create_config(config, MODEL_NAME, base)
        labels.write_labels(config, {'stable': new, 'rollback': old}, MODEL_NAME, staged=False)
        split = os.path.join(root, traffic.TRAFFIC_FILE)
        traffic.write_split(split, MODEL_NAME, 0.0)
        settings = ServerSettings.from_config_file(config, rest_port=0, grpc_port=0, poll_seconds=0.1,
                                                   config_poll_seconds=args.config_poll, traffic_config_file=split)
        results = {'warm (label move, both loaded)': [], 'cold (load, then move)': []}
        with ModelServer(settings) as server, Load(server.grpc_port, rows, args.threads) as load:
            time.sleep(2)
            for _ in range(args.repeats):
                # Warm: stable=new with old kept loaded under `rollback`; the rollback is one label move.
                results['warm (label move, both loaded)'].append(switch(server, load, config, {'stable': old}, old))
                switch(server, load, config, {'stable': new}, new)
                time.sleep(args.config_poll * 2 + 0.5)  # `old`, in no label now, is unloaded
                # Cold: only `new` is loaded; moving stable to `old` loads it first.
                results['cold (load, then move)'].append(switch(server, load, config, {'stable': old}, old))
                switch(server, load, config, {'stable': new, 'rollback': old}, new)
            answered, failed = len(load.answers), len(load.failures)
    print(f'rollback under load: {args.threads} gRPC clients, config poll {args.config_poll:g} s, '
          f'{args.repeats} repeats; {answered} requests in all, {failed} failed')
    print(f'  {"kind":<32} {"switch s (median)":>18} {"requests meanwhile":>19} {"failed":>7}')
    medians = {}
    for kind, runs in results.items():
        medians[kind] = statistics.median(r[0] for r in runs)
        print(f'  {kind:<32} {medians[kind]:>18.2f} {statistics.median(r[1] for r in runs):>19.0f} '
              f'{sum(r[2] for r in runs):>7}')
    warm, cold = medians.values()
    print(f'  warm / cold: {warm / cold:.2f}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
