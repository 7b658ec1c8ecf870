"""Server-side batching: concurrent requests share one model call.

Per model version and signature, requests wait in a queue; a batch thread
takes the first, gathers more for up to `batch_timeout_micros` or until
`max_batch_size` examples, runs them as one batch and hands each request its
slice. A model call costs about the same for 1 or 100 examples, so under
concurrent load this multiplies throughput. Options are TF Serving's
BatchingParameters, read from the same text-format file
(`serving/config/batching.config`).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Dict, List, Mapping

import grpc
import numpy as np

from serving import protos
from serving.errors import ServingError, invalid


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 256
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100

    @classmethod
    def from_file(cls, path: str) -> 'BatchingOptions':
        """Reads TF Serving's BatchingParameters text proto, as strictly as TF Serving."""
        params = protos.read_text(path, protos.BatchingParameters())
        defaults = cls()
        options = cls(**{field.name: getattr(params, field.name).value if params.HasField(field.name)
                         else getattr(defaults, field.name) for field in dataclasses.fields(cls)})
        if min(options.max_batch_size, options.num_batch_threads, options.max_enqueued_batches) < 1 \
                or options.batch_timeout_micros < 0:
            raise ValueError(f'{path}: batching parameters must be positive (batch_timeout_micros may be 0)')
        return options


class _Task:
    __slots__ = ('inputs', 'size', 'done', 'outputs', 'error')

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int):
        self.inputs, self.size = inputs, size
        self.done = threading.Event()
        self.outputs, self.error = None, None


def _shapes(task) -> dict:
    """A task's input shapes but the 0th dimension: only tasks alike in these concatenate."""
    return {name: array.shape[1:] for name, array in task.inputs.items()}


class Batcher:
    """Batches one servable's `run_unbatched` calls, per signature.

    At most `max_enqueued_batches * max_batch_size` examples wait at once;
    beyond that a request fails at once with UNAVAILABLE (clients retry, the
    autoscaler sees load) instead of making every request slower.
    """

    _POLL_SECONDS = 0.1  # how soon idle batch threads notice close()

    def __init__(self, options: BatchingOptions, on_batch=None):
        self.options = options
        self._on_batch = on_batch
        self._queues: Dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._queued_examples = 0
        self._closed = threading.Event()

    def _queue_for(self, servable, signature: str) -> queue.Queue:
        """The signature's queue; called with the lock held."""
        if signature not in self._queues:
            q = queue.Queue()
            # Threads first: a queue nobody serves would hang its requests.
            for _ in range(self.options.num_batch_threads):
                threading.Thread(target=self._loop, args=(servable, signature, q), daemon=True,
                                 name=f'batch-{signature}').start()
            self._queues[signature] = q
        return self._queues[signature]

    def run(self, servable, signature: str, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        # What TF Serving's batching session requires of a request (batching/batching_util.h
        # ComputeTensorBatchSize); without batching, the graph alone decides.
        if any(array.ndim == 0 for array in inputs.values()):
            raise invalid('Batching Run() input tensors must have at least one dimension')
        if len({len(array) for array in inputs.values()}) > 1:
            raise invalid('Batching Run() input tensors must have equal 0th-dimension size')
        size = len(next(iter(inputs.values())))
        task = _Task(inputs, size)
        with self._lock:
            # Full-size requests gain nothing from waiting; after close (the
            # version was unloaded while this request held it) run directly.
            direct = size >= self.options.max_batch_size or self._closed.is_set()
            if not direct:
                if self._queued_examples + size > self.options.max_enqueued_batches * self.options.max_batch_size:
                    raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                       'The batch scheduling queue to which this session run belongs is full')
                self._queued_examples += size
                self._queue_for(servable, signature).put_nowait(task)
        if direct:
            return servable.run_unbatched(signature, inputs)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def _take(self, q: queue.Queue, timeout: float):
        task = q.get(timeout=timeout) if timeout > 0 else q.get_nowait()
        with self._lock:
            self._queued_examples -= task.size
        return task

    def _loop(self, servable, signature: str, q: queue.Queue) -> None:
        carried = None
        while True:
            try:
                task = carried or self._take(q, self._POLL_SECONDS)
            except queue.Empty:
                if self._closed.is_set():  # closed and drained: every queued request was answered
                    return
                continue
            carried = None
            batch, size = [task], task.size
            deadline = time.perf_counter() + self.options.batch_timeout_micros / 1e6
            while size < self.options.max_batch_size:
                try:
                    nxt = self._take(q, deadline - time.perf_counter())
                except queue.Empty:
                    break
                if size + nxt.size > self.options.max_batch_size or _shapes(nxt) != _shapes(task):
                    carried = nxt
                    break
                batch.append(nxt)
                size += nxt.size
            self._run_batch(servable, signature, batch)

    def _run_batch(self, servable, signature: str, batch: List[_Task]) -> None:
        try:
            if len(batch) == 1:
                results = [servable.run_unbatched(signature, batch[0].inputs)]
            else:
                merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
                outputs = servable.run_unbatched(signature, merged)
                splits = np.cumsum([t.size for t in batch])[:-1]
                parts = {k: np.split(v, splits) for k, v in outputs.items()}
                results = [{k: parts[k][i] for k in parts} for i in range(len(batch))]
            for task, result in zip(batch, results):
                task.outputs = result
        except ServingError as e:
            if len(batch) > 1:
                # One bad request must not fail its neighbours: run each alone.
                for task in batch:
                    self._run_batch(servable, signature, [task])
                return
            batch[0].error = e
        except Exception as e:  # never leave a waiting request hanging
            for task in batch:
                task.error = ServingError(grpc.StatusCode.INTERNAL, f'{type(e).__name__}: {e}')
        if self._on_batch:
            self._on_batch(sum(t.size for t in batch))
        for task in batch:
            task.done.set()

    def close(self) -> None:
        """No new waiting; batch threads answer what is queued, then exit."""
        with self._lock:
            self._closed.set()
