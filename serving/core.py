"""The serving core both front ends call: resolve, run, measure, log.

REST and gRPC differ only in how they decode requests and encode answers;
version resolution, the model call, metrics and request logging happen here,
once, so both protocols behave identically.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from serving.errors import ServingError
from serving.manager import ModelRegistry
from serving.servable import Servable
from serving.telemetry import Metrics, RequestLogger


def new_request_id() -> str:
    return uuid.uuid4().hex


class ServingCore:
    def __init__(self, registry: ModelRegistry, metrics: Metrics, request_logger: Optional[RequestLogger] = None):
        self.registry = registry
        self.metrics = metrics
        self.request_logger = request_logger

    @contextlib.contextmanager
    def _measured(self, model_name: str, signature_name: str, api: str, protocol: str, call: Dict):
        """Counts and times a request; `call['version']` is filled in once resolved."""
        start = time.perf_counter()
        code = 'OK'
        try:
            yield
        except ServingError as e:
            code = e.code_name
            raise
        except Exception:
            code = 'INTERNAL'
            raise
        finally:
            version = str(call.get('version', ''))
            labels = (model_name, version, signature_name, api, protocol)
            self.metrics.requests.labels(*labels, code).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
            if code == 'OK':
                self.metrics.examples.labels(model_name, version, api).inc(call.get('examples', 0))

    def predict(self, model_name: str, version: Optional[int], label: Optional[str], signature_name: str,
                inputs: Mapping[str, np.ndarray], protocol: str, request_id: str,
                output_filter: Sequence[str] = ()) -> Tuple[Servable, str, Dict[str, np.ndarray]]:
        call: Dict = {}
        with self._measured(model_name, signature_name or 'serving_default', 'predict', protocol, call):
            servable = self.registry.resolve(model_name, version, label)
            call['version'] = servable.version
            signature = servable.signature(signature_name)
            outputs = servable.run(signature, inputs, output_filter)
            call['examples'] = len(next(iter(outputs.values()))) if outputs else 0
        if self.request_logger:
            specs = servable.input_specs[signature]
            serialized = _serialized_examples_input(specs)
            self.request_logger.log(model_name, servable.version, signature, request_id, inputs, outputs,
                                    serialized_input=serialized)
        return servable, signature, outputs

    def classify(self, model_name: str, version: Optional[int], label: Optional[str], signature_name: str,
                 examples: List[bytes], protocol: str, request_id: str):
        return self._examples_call('classify', model_name, version, label, signature_name, examples,
                                   protocol, request_id)

    def regress(self, model_name: str, version: Optional[int], label: Optional[str], signature_name: str,
                examples: List[bytes], protocol: str, request_id: str):
        return self._examples_call('regress', model_name, version, label, signature_name, examples,
                                   protocol, request_id)

    def _examples_call(self, api, model_name, version, label, signature_name, examples, protocol, request_id):
        call: Dict = {}
        with self._measured(model_name, signature_name or 'serving_default', api, protocol, call):
            servable = self.registry.resolve(model_name, version, label)
            call['version'] = servable.version
            signature = servable.signature(signature_name)
            result = getattr(servable, api)(signature, examples)
            call['examples'] = len(examples)
        if self.request_logger:
            outputs = ({'classes': result[0], 'scores': result[1]} if api == 'classify' else {'outputs': result})
            outputs = {k: v for k, v in outputs.items() if v is not None}
            self.request_logger.log(model_name, servable.version, signature, request_id,
                                    {'examples': np.array(examples, dtype=object)}, outputs,
                                    serialized_input='examples')
        return servable, signature, result


def _serialized_examples_input(specs) -> Optional[str]:
    """The input name if the signature takes serialized tf.Examples (one string input)."""
    if len(specs) == 1:
        ((name, spec),) = specs.items()
        if spec.dtype.name == 'string' and name in ('examples', 'inputs'):
            return name
    return None
