"""A pushed version's lineage as a page: why it is serving, and what made it.

`taxi-pipeline lineage VERSION --html FILE` writes it. Everything comes from
one `lineage.trace` (ML Metadata), laid out by `reports` (templates/lineage.html): the headline (stage, blessing, drift
verdict, a release history that does not verify), the decisions that moved
it, a drawing of the lineage graph, then the run, code, parameters, data,
schema, Transform, training, evaluation, push and the live metrics the
monitor recorded since. Same look as the other reports; no script, no
network.

The drawing is the upstream lineage of the PushedModel cut down to what a
reader asks "what made it" about: the executions of the run that pushed it,
and the artifacts they read and wrote; an artifact an earlier run made (a
cached component's output) is drawn apart and names that run. What
consumed the model since (release decisions, monitoring passes) is one node
per kind with a count: dozens of passes would otherwise bury the graph.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from components.artifact_contents import slice_order
from foundation.alerts import alert_text
from foundation.metadata_store import RUN_CONTEXT_TYPES, flag, type_name
from monitoring import metadata_record
from provenance import run_record
from release import ledger
from reports import page as reports_page
from reports.formatting import count_text, finite, metric_text, value_text

_CACHED = metadata_store_pb2.Execution.CACHED
# Kinds of the drawing's nodes (reports.charts.DAG_KINDS) and what the legend calls them.
LEGEND = {'execution': 'component run', 'failed': 'failed component', 'artifact': 'artifact',
          'earlier': 'made by an earlier run', 'release': 'release decisions', 'monitor': 'monitoring passes'}
# Wider than this (a page on a laptop screen), the graph is drawn top to bottom rather than scrolled.
_GRAPH_WIDTH = 1150

# -- values ------------------------------------------------------------------------------------------

# A value as a cell shows it: NaN and missing as '-', floats to 4 significant digits.
_text = value_text


def _verdict_class(verdict: Optional[str]) -> str:
    return 'bad' if verdict in (None, 'drift') else 'good'


def _blessed_class(blessed: Optional[bool]) -> str:
    return 'good' if blessed else 'bad'


# -- the drawing -------------------------------------------------------------------------------------

def _short_run(name: str) -> str:
    """A run's name without its fraction of a second: enough to tell runs apart on a node."""
    return name.split('.', 1)[0]


def _artifact_key_shown(key: str, type_name: str) -> bool:
    """An output key is worth a second line only where it says more than the type (`baseline` Model)."""
    return key.replace('_', '') not in type_name.lower()


def _run_names(graph: metadata_store_pb2.LineageGraph) -> Dict[int, str]:
    """Execution id -> the name of the run it belongs to."""
    runs = {c.id: c.name for c in graph.contexts if c.type in RUN_CONTEXT_TYPES}
    return {a.execution_id: runs[a.context_id] for a in graph.associations if a.context_id in runs}


def _upstream(lineage, nodes: Dict[str, tuple], edges: List[Tuple[str, str]]) -> None:
    """The producing run's executions in the upstream graph and the artifacts they read and wrote."""
    graph = lineage.upstream
    in_run = ({s.execution.id for s in lineage.run.steps.values()} if lineage.run is not None
              else {e.id for e in graph.executions})
    all_executions = {e.id: e for e in graph.executions}
    executions = {i: e for i, e in all_executions.items() if i in in_run}
    artifacts = {a.id: a for a in graph.artifacts}
    runs = _run_names(graph)
    producers: Dict[int, List[int]] = {}
    keys: Dict[int, str] = {}
    for event in graph.events:
        if event.type in run_record.OUTPUT_EVENTS:
            producers.setdefault(event.artifact_id, []).append(event.execution_id)
            if event.path.steps:
                keys.setdefault(event.artifact_id, event.path.steps[0].key)
    used, outputs = [], {}
    for event in sorted(graph.events, key=lambda e: (e.execution_id, e.artifact_id)):
        if event.execution_id not in executions or event.artifact_id not in artifacts:
            continue
        execution, artifact = f'e{event.execution_id}', f'a{event.artifact_id}'
        if event.type in run_record.OUTPUT_EVENTS:
            edges.append((execution, artifact))
            outputs.setdefault(event.execution_id, []).append(event.artifact_id)
        elif event.type in run_record.INPUT_EVENTS:
            edges.append((artifact, execution))
        used.append(event.artifact_id)
    # An artifact only a cached execution of this run output was made by the run whose execution
    # first output it (a later run's cached execution outputs it too: that one did not make it); one
    # no execution in the graph output came from outside. Drawn first: that is where the drawing starts.
    earlier = {}
    for artifact_id in dict.fromkeys(used):
        found = [all_executions[p] for p in producers.get(artifact_id, []) if p in all_executions]
        if any(e.id in executions and e.last_known_state != _CACHED for e in found):
            continue
        original = min((e for e in found if e.id not in executions and e.last_known_state != _CACHED),
                       key=lambda e: e.id, default=None)
        earlier[artifact_id] = runs.get(original.id) if original is not None else None
    for artifact_id, run in earlier.items():
        nodes[f'a{artifact_id}'] = _earlier_node(artifacts[artifact_id], keys.get(artifact_id), run)
    # Then each execution followed by what it made: the order the layout starts from.
    steps = {s.execution.id: s for s in run_record.steps(graph, executions)}
    for execution_id in sorted(executions):
        nodes[f'e{execution_id}'] = _execution_node(steps[execution_id])
        for artifact_id in dict.fromkeys(outputs.get(execution_id, [])):
            if artifact_id not in earlier:
                nodes[f'a{artifact_id}'] = _artifact_node(lineage, artifacts[artifact_id], keys.get(artifact_id))


def _execution_node(step: run_record.Step) -> tuple:
    state, seconds, execution = step.state, step.seconds, step.execution
    detail = 'cached' if state == 'cached' else f'{seconds:.1f}s' if state == 'done' else state
    tooltip = f'{execution.type} (execution {execution.id}): {state}, {seconds:.1f}s'
    return f'{step.node_id}\n{detail}', 'failed' if state == 'FAILED' else 'execution', tooltip


def _artifact_node(lineage, artifact: metadata_store_pb2.Artifact, key: Optional[str]) -> tuple:
    kind = type_name(artifact.type)
    second = key if key and _artifact_key_shown(key, kind) else ''
    if artifact.id == lineage.pushed.id:
        second = f'version {lineage.version.version}'
    elif kind == 'ModelBlessing' and 'blessed' in artifact.custom_properties:
        second = 'blessed' if flag(artifact.custom_properties, 'blessed') else 'NOT blessed'
    return f'{kind}\n{second}' if second else kind, 'artifact', f'artifact {artifact.id}: {artifact.uri}'


def _earlier_node(artifact: metadata_store_pb2.Artifact, key: Optional[str], run: Optional[str]) -> tuple:
    kind = type_name(artifact.type)
    made = f'made by run {run}' if run else 'not made by this run'
    second = f'run {_short_run(run)}' if run else 'from outside the run'
    label = kind if not key or not _artifact_key_shown(key, kind) else f'{kind} ({key})'
    return (f'{label}\n{second}', 'earlier',
            f'artifact {artifact.id}: {artifact.uri}\n{made} (this run reused it: its component was cached)')


def _downstream(lineage, nodes: Dict[str, tuple], edges: List[Tuple[str, str]]) -> None:
    """What consumed the PushedModel, one node per execution type with a count."""
    by_type: Dict[str, List[metadata_store_pb2.Execution]] = {}
    for execution in sorted(lineage.downstream.executions, key=lambda e: e.id):
        by_type.setdefault(execution.type, []).append(execution)
    pushed = f'a{lineage.pushed.id}'
    for kind, executions in by_type.items():
        if kind == ledger.EXECUTION_TYPE:
            node = _release_node(lineage, executions)
        elif kind == metadata_record.EXECUTION_TYPE:
            node = _monitor_node(lineage, executions)
        else:
            node = (f'{len(executions)} × {kind}', 'execution', '')
        nodes[f'd-{kind}'] = node
        edges.append((pushed, f'd-{kind}'))


def _release_node(lineage, executions) -> tuple:
    ids = {e.id for e in executions}
    decisions = [d for d in lineage.decisions if d.execution_id in ids]
    count = len(executions)
    label = f'{count} release decision{"s" if count != 1 else ""}'
    latest = decisions[-1] if decisions else None
    second = f'latest #{latest.sequence} {latest.action}' if latest else ''
    tooltip = '\n'.join(f'#{d.sequence} {ledger.format_time(d.at_micros)} {d.action} {d.model_version} by '
                        f'{d.actor}: {d.reason}' for d in decisions)
    return f'{label}\n{second}' if second else label, 'release', tooltip


def _monitor_node(lineage, executions) -> tuple:
    count = len(executions)
    label = f'{count} monitoring pass{"es" if count != 1 else ""}'
    alerted = sum(1 for p in lineage.live if p.get('alerts'))
    second = f'{alerted} with alerts' if alerted else 'no alerts'
    tooltip = ''
    if lineage.live:
        tooltip = (f'windows {ledger.format_time(lineage.live[0].get("window_start_micros"))} to '
                   f'{ledger.format_time(lineage.live[-1].get("window_end_micros"))} UTC')
    return f'{label}\n{second}', 'monitor', tooltip


def graph(lineage) -> Tuple[Dict[str, tuple], List[Tuple[str, str]]]:
    """The drawing's nodes (id -> (label, kind, tooltip)) and edges, for reports.charts.dag."""
    nodes: Dict[str, tuple] = {}
    edges: List[Tuple[str, str]] = []
    _upstream(lineage, nodes, edges)
    _downstream(lineage, nodes, edges)
    return nodes, edges


# -- sections ----------------------------------------------------------------------------------------

def _headline(data: Dict) -> List[tuple]:
    training, evaluation, run = data['training'] or {}, data['evaluation'] or {}, data['run'] or {}
    verdict = training.get('drift_verdict')
    drifted = training.get('drift_features') or []
    blessed = evaluation.get('blessed')
    return [
        ('model', data['directory']),
        ('stage', data['stage'], 'good' if data['stage'] == 'stable' else ''),
        ('blessed', 'yes' if blessed else 'no' if blessed is not None else '-', _blessed_class(blessed)),
        ('drift verdict', (verdict or 'not recorded') + (f' ({", ".join(drifted)})' if drifted else ''),
         _verdict_class(verdict)),
        ('pushed (UTC)', data['pushed']['at']),
        ('made by run', run.get('name')),
        ('on disk', 'yes' if data['on_disk'] else 'NO: the version directory is gone', '' if data['on_disk']
         else 'bad'),
    ]


def _decisions(data: Dict) -> List[Dict]:
    """The approvals and stage changes of the version, once each, in order."""
    found = {d['sequence']: d for d in data['approvals'] + data['stage_history']}
    return [found[k] for k in sorted(found)]


def _serving_sentence(data: Dict) -> Dict:
    """Why the version is (not) serving, in a sentence, from its last stage change and approval."""
    stage, history, approvals = data['stage'], data['stage_history'], data['approvals']
    approval = approvals[-1] if approvals else None
    approved = ('not approved' if approval is None else
                f'{approval["action"]}d by {approval["actor"]} (#{approval["sequence"]}, {approval["at"]} UTC): '
                f'“{approval["reason"]}”')
    if not history:
        return {'released': False, 'pushed': data['pushed']['at'], 'approved': approved}
    last = history[-1]
    moved = (f'#{last["sequence"]} {last["action"]} by {last["actor"]} on {last["at"]} UTC: '
             f'“{last["reason"]}”')
    if stage == 'stable':
        head, text, css = 'Serving production', f'(stable) since {moved}. Approval: {approved}.', 'good'
    elif stage == 'canary':
        head, text, css = 'In canary', f'(a share of the traffic) since {moved}. Approval: {approved}.', ''
    elif last['action'] == ledger.ROLLBACK:
        head, text, css = 'Rolled back:', f'{moved}.', 'bad'
    elif stage == 'archived':
        head, text, css = 'No longer serving', f'(archived) since {moved}.', 'bad'
    else:
        head, text, css = f'Stage {stage}', f'since {moved}. Approval: {approved}.', ''
    return {'released': True, 'head': head, 'text': text, 'css': css}


def _evidence(evidence: Dict) -> str:
    """What a decision rested on, short: the canary test's recommendation, else key: value pairs.
    Not release.report.evidence_text (the registry's and the model card's), which shows every value in full
    as JSON, and of a canary test its AUC and nothing beside: a cell here names every key, digests cut short."""
    if not evidence:
        return '-'
    test = evidence.get('canary_test')
    shown = [f'canary test: {test.get("recommendation")}'] if isinstance(test, dict) else []
    shown += [f'{k}: {_text(v)}' for k, v in sorted(evidence.items()) if k != 'canary_test'
              and not isinstance(v, dict) and not (k.endswith('sha256') and isinstance(v, str))]
    shown += [f'{k}: {v[:12]}…' for k, v in sorted(evidence.items()) if k.endswith('sha256') and isinstance(v, str)]
    return '; '.join(shown)


def _serving(data: Dict) -> Dict:
    # The question a reader comes with; for a version not serving, its negative.
    return {**_serving_sentence(data), 'serving': data['stage'] in ('stable', 'canary'),
            'decisions': [[d['sequence'], d['at'], d['action'], d['actor'], d['reason'],
                           f'{d["stage_before"]} → {d["stage_after"]}' if d['stage_after'] else '-',
                           _evidence(d['evidence'])] for d in _decisions(data)]}


def _graph(lineage) -> Dict:
    nodes, edges = graph(lineage)
    kinds = {node[1] for node in nodes.values()}
    return {'nodes': nodes, 'edges': edges, 'legend': {k: text for k, text in LEGEND.items() if k in kinds},
            'max_width': _GRAPH_WIDTH}


def _run(data: Dict) -> Optional[List[tuple]]:
    run = data['run']
    if run is None:
        return None
    trigger = run['trigger'] or {}
    detail = ', '.join(f'{k}: {_text(v)}' for k, v in sorted((trigger.get('detail') or {}).items()))
    return [('name', run['name']), ('trigger', trigger.get('kind', 'not recorded')), ('trigger detail', detail or '-'),
            ('outcome', run['outcome'], 'good' if run['outcome'] == 'succeeded' else 'bad'),
            ('started (UTC)', run['started']), ('duration', f'{run["seconds"]:.1f}s')]


def _code(data: Dict) -> Optional[List[tuple]]:
    code = data['code']
    if not code:
        return None
    dirty = code.get('dirty')
    return [('commit', code.get('commit')),
            ('uncommitted changes', '-' if dirty is None else 'yes' if dirty else 'no', 'bad' if dirty else ''),
            ('image', code.get('image')), ('package', code.get('package_version')),
            ('tfx', code.get('tfx_version')), ('component code digest (SHA-256)', code.get('source_digest'))]


def _parameters(data: Dict) -> List[tuple]:
    params = (data['run'] or {}).get('parameters') or {}
    return [(k, v) for k, v in params.items() if not k.startswith('hp.')]


def _data(data: Dict) -> Optional[Dict]:
    found = data['data']
    if found is None:
        return None
    rows = found['rows'] or {}
    statistics = found['statistics']
    columns = list(statistics[0]) if statistics else []
    return {
        'facts': [('span', found['span']), ('data root', found['data_root']), ('files', found['files'] or '-'),
                  ('input fingerprint', found['input_fingerprint']), ('train rows', rows.get('train')),
                  ('eval rows', rows.get('eval')), ('examples', found['examples_uri']),
                  ('statistics', found['statistics_uri'])],
        'train_rows': rows.get('train'), 'statistics_columns': columns,
        'statistics': [[_text(row[c]) if row[c] != '' else '-' for c in columns] for row in statistics or []],
        'anomalies_checked': bool(found['anomalies']),
        'anomalies': [(split, line) for split, lines in sorted((found['anomalies'] or {}).items()) for line in lines]}


def _schema(data: Dict) -> Optional[Dict]:
    schema = data['schema']
    if schema is None:
        return None
    previous = schema['previous_version']
    if schema['changed'] is None:
        said, css = 'No earlier pushed version to compare with.', ''
    elif schema['changed']:
        said, css = f'Changed since version {previous}.', 'bad'
    else:
        said, css = f'Unchanged since version {previous}.', 'good'
    return {'said': said, 'css': css, 'previous': previous,
            'facts': [('file', schema['file'] or schema['uri']), ('SHA-256', schema['sha256'])],
            'differences': [[d] for d in schema['differences'] or []]}


def _transform(data: Dict) -> Optional[List[tuple]]:
    found = data['transform']
    if found is None:
        return None
    return [('preprocessing_fn', found['preprocessing_fn']), ('state', found['state']),
            ('transform graph', found['transform_graph'])]


def _training(data: Dict) -> Optional[Dict]:
    found = data['training']
    if found is None:
        return None
    verdict = found['drift_verdict']
    return {'facts': [('run_fn', found['run_fn']), ('state', found['state']), ('train steps', found['train_steps']),
                      ('eval steps', found['eval_steps']),
                      ('drift verdict', verdict or 'not recorded', _verdict_class(verdict)),
                      ('drifted features', found['drift_features'] or '-'), ('model', found['model_uri'])],
            'hyperparameters': sorted((found['hyperparameters'] or {}).items())}


def _evaluation(data: Dict) -> Optional[Dict]:
    found = data['evaluation']
    if not found:
        return None
    thresholds = found['thresholds']
    slices = found['slices'] or {}
    names = sorted(slices, key=slice_order)
    auc = {name: finite(slices[name]['candidate'].get('auc')) for name in names}
    return {
        'facts': [(f'threshold {k}', v) for k, v in thresholds.items()]
        + [('baseline version', found['baseline_version'] or 'none: no earlier pushed version'),
           ('blessed', 'yes' if found['blessed'] else 'no', _blessed_class(found['blessed']))],
        'slices': [[name, count_text(slices[name]['candidate'].get('example_count')),
                    metric_text(slices[name]['candidate'].get('auc')),
                    metric_text((slices[name]['baseline'] or {}).get('auc')),
                    metric_text(slices[name]['candidate'].get('binary_accuracy')),
                    metric_text((slices[name]['baseline'] or {}).get('binary_accuracy'))] for name in names],
        'auc': {k: v for k, v in auc.items() if v is not None}}


def _push(data: Dict) -> List[tuple]:
    blessed = (data['evaluation'] or {}).get('blessed')
    return [('blessed', 'yes' if blessed else 'no' if blessed is not None else '-', _blessed_class(blessed)),
            ('pushed (UTC)', data['pushed']['at']), ('pushed to', data['pushed']['destination']),
            ('PushedModel artifact', data['pushed']['artifact_id'])]


def _series(passes: List[Dict], key: str) -> List[Tuple[float, float]]:
    return [(p['window_end_micros'], p[key]) for p in passes if finite(p.get(key)) is not None]


def _live(data: Dict) -> Optional[Dict]:
    passes = data['live']
    if not passes:
        return None
    ends = [p['window_end_micros'] for p in passes]
    x_range = (min(ends), max(ends)) if len(ends) > 1 else (ends[0] - 1, ends[0] + 1)
    metrics = {'live AUC': _series(passes, 'live_auc'), 'live accuracy': _series(passes, 'live_accuracy')}
    values = [v for points in metrics.values() for _, v in points]
    outliers = _series(passes, 'outlier_rate')
    return {
        'x_range': x_range,
        'x_labels': {x_range[0]: ledger.format_time(x_range[0]), x_range[1]: ledger.format_time(x_range[1])},
        'metrics': metrics if values else None,
        'low': max(0.0, math.floor(min(values) * 10) / 10) if values else None,
        'outliers': outliers,
        # A round top (a multiple of 0.02) keeps the axis labels short enough for the chart's margin.
        'high': math.ceil(max(v for _, v in outliers) * 1.2 * 50) / 50 or 0.02 if outliers else None,
        'rows': [[ledger.format_time(p.get('window_start_micros')), ledger.format_time(p.get('window_end_micros')),
                  _text(p.get('examples')), metric_text(p.get('outlier_rate')), _text(p.get('labelled_examples')),
                  metric_text(p.get('live_auc')), metric_text(p.get('live_accuracy')), _alerts(p)] for p in passes]}


def _alerts(entry: Dict) -> str:
    found = (entry.get('findings') or {}).get('alerts') or []
    return '; '.join(map(alert_text, found)) if found else str(entry.get('alerts') or 0)


# -- the page ----------------------------------------------------------------------------------------

def _nav(data: Dict, reports_dir: Optional[str]):
    runs = [data['run']['name']] if data['run'] else []
    return reports_page.related(reports_dir, reports_page.report_file(reports_page.LINEAGE, data['version']),
                                runs=runs, versions=[data['version']])


def page(lineage, reports_dir: Optional[str] = None, data: Optional[Dict] = None) -> str:
    """The lineage page of a traced version (provenance.lineage.Lineage); links go to the reports that
    exist in `reports_dir`. `data`: its `to_dict()` if the caller has it already (reading the
    statistics and TFMA's metrics again takes seconds)."""
    data = data if data is not None else lineage.to_dict()
    return reports_page.render(
        'lineage.html', title=f'Lineage of version {data["version"]}', nav=_nav(data, reports_dir),
        version=data['version'], stage=data['stage'], history_problems=data['history_problems'],
        headline=_headline(data), serving=_serving(data), graph=_graph(lineage), has_run=data['run'] is not None,
        run=_run(data), code=_code(data), parameters=_parameters(data), data=_data(data), schema=_schema(data),
        transform=_transform(data), training=_training(data), evaluation=_evaluation(data), push=_push(data),
        live=_live(data))
