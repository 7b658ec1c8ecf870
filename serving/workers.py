"""Gateway worker processes: several gateways sharing one pair of ports, to use more than one core.

The gateway's work per request is Python (decoding, forwarding, logging: about 2 ms of CPU,
docs/performance.md#gateway-ceiling), and one Python process runs one thread at a time, so one
gateway process caps near what one core does. `serve --upstream ... --workers N` starts N-1
more gateway processes with the same flags; every process binds the REST and gRPC ports with
SO_REUSEPORT, and the kernel spreads connections across them.

- Metrics: prometheus_client's multiprocess mode (one directory of per-process files), so a
  scrape of whichever worker answers reports the requests of all.
- Request log and feedback: each worker writes its own files, as replicas do (the writer id
  keeps names apart; feedback duplicates across writers are reported by the reader).
- Stopping: SIGTERM to the first process is passed to every worker; each drains as one gateway
  does; the first exits once all have, non-zero if any left requests unfinished.
- A killed first process: each worker asked the kernel for SIGTERM when its parent dies
  (`die_with_parent`). A test of it passed alone and failed twice inside the whole suite (the
  worker was still there 60 s after the kill); until that is understood, a supervisor that
  kills the first process should kill its process group.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

_METRICS_DIR = 'PROMETHEUS_MULTIPROC_DIR'
_PARENT = 'TAXI_GATEWAY_PARENT_PID'


def share_metrics(directory: Optional[str]) -> str:
    """Puts prometheus_client in multiprocess mode over `directory` (a new one for the first
    process). prometheus_client reads the setting once, when it is imported: call this first."""
    if 'prometheus_client' in sys.modules:
        raise RuntimeError('internal: prometheus_client was imported before the workers were set up')
    if not directory:
        directory = tempfile.mkdtemp(prefix='gateway-metrics-')
    os.environ[_METRICS_DIR] = directory
    return directory


def die_with_parent() -> None:
    """In a worker, first thing: SIGTERM when the first process dies, however it dies (a SIGKILL
    gives it no chance to stop its workers), so no worker outlives it holding the ports."""
    import ctypes
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get(_PARENT):  # it died before the line above took effect
        sys.exit('gateway worker: the process that started it is gone')


def say(line: str) -> None:
    """A worker's line, to the first process; dropped if that process is gone (the worker then still
    drains and exits, rather than fail on the closed pipe)."""
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError):
        pass


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _worker_command(settings, index: int) -> List[str]:
    # The same command line, with the ports the first process bound and the shared metrics directory;
    # argparse takes the last of repeated flags.
    return [sys.executable, '-c', 'from cli.main import console_main; console_main()', *sys.argv[1:],
            '--rest-port', str(settings.rest_port), '--grpc-port', str(settings.grpc_port),
            '--worker-of', os.environ[_METRICS_DIR]]


def serve(settings, count: int, emit_line=print) -> int:
    """The first gateway process: serves, starts `count - 1` workers, and stops them on SIGTERM."""
    from serving import gateway
    settings = dataclasses.replace(settings, reuse_port=True,
                                   rest_port=settings.rest_port or _free_port(settings.host),
                                   grpc_port=settings.grpc_port or _free_port(settings.host))
    processes: List[subprocess.Popen] = []

    def start_workers(_server) -> None:
        for index in range(1, count):
            # No preexec_fn: Python code between fork and exec in a process running gRPC's threads
            # can crash the child (gRPC's poller); the worker arranges its own end (die_with_parent).
            process = subprocess.Popen(_worker_command(settings, index), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, _PARENT: str(os.getpid())})
            processes.append(process)
            output = []
            for line in process.stdout:
                output.append(line)
                if 'Press Ctrl-C' in line:
                    break
            else:
                raise RuntimeError(f'gateway worker {index} did not start (exit {process.wait()}): '
                                   f'{"".join(output[-3:])}')
            # What a worker says from now on is news (errors): passed on, prefixed.
            threading.Thread(target=lambda p=process, i=index: [emit_line(f'  [worker {i}] {line.rstrip()}')
                                                                for line in p.stdout], daemon=True).start()
        emit_line(f'  workers: {count} processes share ports {settings.rest_port} and {settings.grpc_port} '
                  f'(pids {", ".join(str(p) for p in [os.getpid()] + [w.pid for w in processes])})')

    def stop_workers() -> int:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        failed = 0
        for process in processes:
            try:
                failed += process.wait(timeout=settings.drain_seconds + 30) != 0
            except subprocess.TimeoutExpired:
                process.kill()
                failed += 1
        shutil.rmtree(os.environ[_METRICS_DIR], ignore_errors=True)
        return failed

    return gateway.serve_until_interrupted(settings, emit_line, started=start_workers, stopping=stop_workers)
