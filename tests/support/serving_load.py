"""Clients sending requests in a loop while a test changes what serves them."""

import threading

from serving.client import GrpcClient, RestClient
from taxi_model import contract


def predict(client, rows, signature=contract.PREDICT_RAW, **target):
    """(tip probabilities, version that answered) for raw rows, through the model's contract."""
    prediction = client.predict(contract.inputs_for(signature, rows), signature=signature, **target)
    return contract.probabilities(prediction.outputs), prediction.model_version


class LoadGenerator:
    """Clients on both protocols sending requests in a loop; records every outcome."""

    def __init__(self, server, rows, model_name, threads_per_protocol=2, **target):
        self.rows, self.stop, self.target = rows, threading.Event(), target
        self.failures, self.versions, self.count = [], [], 0
        self.versions_by_client = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(factory, i), daemon=True)
                        for i, factory in enumerate(
                            [lambda: RestClient('127.0.0.1', server.rest_port, model_name=model_name),
                             lambda: GrpcClient('127.0.0.1', server.grpc_port, model_name=model_name)]
                            * threads_per_protocol)]

    def _loop(self, factory, index):
        client = factory()
        seen = self.versions_by_client.setdefault(index, [])
        i = 0
        while not self.stop.is_set():
            try:
                _, version = predict(client, self.rows[i % len(self.rows):][:4], **self.target)
                with self.lock:
                    self.count += 1
                    if version is not None:
                        self.versions.append(version)
                        seen.append(version)
            except Exception as e:  # any failure is what this test is about
                with self.lock:
                    self.failures.append(repr(e))
            i += 4
        client.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
