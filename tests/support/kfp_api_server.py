"""A loopback HTTP server speaking the KFP v2beta1 REST paths the SDK's Client uses.

For contract tests: it keeps just enough state (pipelines, versions,
experiments, runs, recurring runs) to answer the Client, and records every
request so tests can assert paths, query strings, bodies and the uploaded
spec. It binds to 127.0.0.1 on a free port and serves from a thread.
"""

from __future__ import annotations

import cgi
import dataclasses
import io
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlparse

import yaml

API = '/apis/v2beta1'
CREATED = '2026-01-01T00:00:00Z'


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    json: Optional[dict] = None
    uploaded: Optional[bytes] = None


class FakeKfpApi:
    def __init__(self, fail: Optional[Dict[str, int]] = None):
        """`fail` maps 'METHOD /path' to an HTTP status to answer with instead."""
        self.requests: List[Request] = []
        self.pipelines: Dict[str, dict] = {}
        self.versions: Dict[str, dict] = {}
        self.experiments: Dict[str, dict] = {}
        self.runs: Dict[str, dict] = {}
        self.recurring_runs: Dict[str, dict] = {}
        # The uploaded spec of each pipeline version (the first upload is a version too).
        self.uploaded_specs: Dict[str, bytes] = {}
        self.fail = fail or {}
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f'http://127.0.0.1:{self._server.server_address[1]}'

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def new_id(self, kind: str) -> str:
        return f'{kind}-{next(self._ids)}'

    def calls(self) -> List[str]:
        return [f'{r.method} {r.path}' for r in self.requests]

    # -- request handling -------------------------------------------------

    def handle(self, request: Request):
        """(status, JSON body) for one request."""
        key = f'{request.method} {request.path}'
        if key in self.fail:
            return self.fail[key], {'error': 'injected failure', 'code': self.fail[key], 'message': 'injected'}
        q = {k: v[0] for k, v in request.query.items()}
        route = (request.method, request.path)
        if route == ('GET', f'{API}/healthz'):
            return 200, {'multi_user': False}
        if route == ('GET', f'{API}/pipelines'):
            name = _filter_value(q.get('filter'))
            found = [p for p in self.pipelines.values() if name is None or p['display_name'] == name]
            return 200, {'pipelines': found, 'total_size': len(found)}
        if route == ('POST', f'{API}/pipelines/upload'):
            pipeline = {'pipeline_id': self.new_id('pipeline'), 'display_name': q['name'], 'created_at': CREATED}
            self.pipelines[pipeline['pipeline_id']] = pipeline
            self.uploaded_specs[pipeline['pipeline_id']] = request.uploaded
            return 200, pipeline
        if route == ('POST', f'{API}/pipelines/upload_version'):
            if q.get('pipelineid') not in self.pipelines:
                return 404, {'error': 'pipeline not found', 'code': 5, 'message': 'pipeline not found'}
            version = {'pipeline_version_id': self.new_id('version'), 'pipeline_id': q['pipelineid'],
                       'display_name': q['name'], 'created_at': CREATED}
            self.versions[version['pipeline_version_id']] = version
            self.uploaded_specs[version['pipeline_version_id']] = request.uploaded
            return 200, version
        if route == ('GET', f'{API}/experiments'):
            name = _filter_value(q.get('filter'))
            found = [e for e in self.experiments.values() if name is None or e['display_name'] == name]
            return 200, {'experiments': found, 'total_size': len(found)}
        if route == ('POST', f'{API}/experiments'):
            experiment = dict(request.json, experiment_id=self.new_id('experiment'), created_at=CREATED)
            self.experiments[experiment['experiment_id']] = experiment
            return 200, experiment
        if route == ('POST', f'{API}/runs'):
            run = dict(request.json, run_id=self.new_id('run'), created_at=CREATED, state='PENDING')
            self.runs[run['run_id']] = run
            return 200, run
        if route == ('GET', f'{API}/recurringruns'):
            found = [r for r in self.recurring_runs.values()
                     if r.get('experiment_id') == q.get('experiment_id', r.get('experiment_id'))]
            return 200, {'recurringRuns': found, 'total_size': len(found)}
        if route == ('POST', f'{API}/recurringruns'):
            recurring = dict(request.json, recurring_run_id=self.new_id('recurring'), created_at=CREATED,
                             status='ENABLED')
            self.recurring_runs[recurring['recurring_run_id']] = recurring
            return 200, recurring
        if request.method == 'GET' and request.path.startswith(f'{API}/pipelines/') and \
                request.path.endswith('/versions'):
            pipeline_id = request.path.split('/')[-2]
            found = [v for v in self.versions.values() if v['pipeline_id'] == pipeline_id]
            if q.get('sort_by', '').endswith('desc'):
                found.reverse()  # created in this order; every created_at is the same here
            return 200, {'pipeline_versions': found, 'total_size': len(found)}
        parts = request.path[len(API) + 1:].split('/')
        if request.method == 'GET' and len(parts) == 4 and parts[0] == 'pipelines' and parts[2] == 'versions':
            # GetPipelineVersion: the version with its spec (v2beta1 PipelineVersion.pipeline_spec).
            version = self.versions.get(parts[3])
            if version is None or version['pipeline_id'] != parts[1]:
                return 404, {'error': 'not found', 'code': 5, 'message': 'pipeline version not found'}
            return 200, dict(version, pipeline_spec=yaml.safe_load(self.uploaded_specs[parts[3]]))
        if request.method == 'DELETE' and request.path.startswith(f'{API}/recurringruns/'):
            run_id = request.path.rsplit('/', 1)[1]
            if self.recurring_runs.pop(run_id, None) is None:
                return 404, {'error': 'not found', 'code': 5, 'message': 'recurring run not found'}
            return 200, {}
        return 404, {'error': f'no route {key}', 'code': 5, 'message': f'no route {key}'}

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlparse(self.path)
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                request = Request(self.command, url.path, parse_qs(url.query), dict(self.headers))
                content_type = self.headers.get('Content-Type', '')
                if content_type.startswith('multipart/form-data'):
                    _, params = cgi.parse_header(content_type)
                    params['boundary'] = params['boundary'].encode()
                    form = cgi.parse_multipart(io.BytesIO(body), params)
                    request.uploaded = form['uploadfile'][0]
                elif body:
                    request.json = json.loads(body)
                api.requests.append(request)
                status, payload = api.handle(request)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


def _filter_value(encoded: Optional[str]) -> Optional[str]:
    """The string a KFP list filter compares the name with, if any."""
    if not encoded:
        return None
    predicates = json.loads(encoded).get('predicates', [])
    for predicate in predicates:
        for field in ('string_value', 'stringValue'):
            if field in predicate:
                return predicate[field]
    return None
