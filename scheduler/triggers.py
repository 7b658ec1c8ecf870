"""When a run is due, and why: plain decisions over the data root and ML Metadata.

- A new span: the data root's latest span is newer than any span a run has
  ingested (ExampleGen's Examples artifacts carry their span). A span whose run
  failed after ingesting it (bad data stops at the gate) is not retried in a loop.
- Alerts: monitoring passes recorded in ML Metadata (monitoring/metadata_record.py)
  that raised alerts of the watched kinds after the last run started. However
  many there are (an alert storm), they make one trigger that names them all,
  and none while the last run is younger than the cooldown: the next check
  after it finds them still pending.
A schedule (cron) is the scheduling library's to fire; it needs no decision.
"""

from __future__ import annotations

import dataclasses
import json
from typing import List, Optional, Tuple

from foundation import alerts, metadata_store
from foundation.metadata_store import number
from monitoring import metadata_record
from pipeline import data
from pipeline.run_trigger import ALERT, NEW_SPAN, Trigger


@dataclasses.dataclass(frozen=True)
class Policy:
    watch_spans: bool = True
    on_alerts: bool = True
    alert_kinds: Tuple[str, ...] = alerts.RETRAIN_KINDS
    cooldown_seconds: float = 6 * 3600
    # The context type of a run: LocalDagRunner's, or Kubeflow Pipelines v2's ('system.PipelineRun').
    run_context_type: str = 'pipeline_run'



def last_run_started_ms(store, context_type: str = 'pipeline_run') -> int:
    runs = store.get_contexts_by_type(context_type) if store else []
    return max((c.create_time_since_epoch for c in runs), default=0)


def trained_span(store) -> Optional[int]:
    """The newest span any run ingested (ExampleGen's Examples carry a `span` custom property)."""
    found = metadata_store.artifacts_of_type(store, 'Examples') if store else []
    spans = [number(a.custom_properties, 'span') for a in found if 'span' in a.custom_properties]
    return max(spans, default=None)


def pending_alerts(store, since_ms: int, kinds) -> List[dict]:
    """Monitoring results created after `since_ms` with alerts of `kinds`, oldest first."""
    if store is None:
        return []
    try:
        results = store.get_artifacts(list_options=metadata_store.ListOptions(filter_query=(
            f"type = '{metadata_record.RESULT_TYPE}' AND create_time_since_epoch > {int(since_ms)} AND "
            "properties.alerts.int_value > 0")))
    except Exception:  # no monitoring pass was ever recorded: the type does not exist yet
        return []
    found = []
    for result in sorted(results, key=lambda a: a.create_time_since_epoch):
        recorded = json.loads(result.properties['findings'].string_value or '{}').get('alerts', [])
        wanted = [a for a in recorded if alerts.Alert.from_record(a).kind in kinds]
        if wanted:
            found.append({'monitoring_result': result.id,
                          'model_version': number(result.properties, 'model_version'),
                          'window_end_micros': number(result.properties, 'window_end_micros'), 'alerts': wanted})
    return found


def latest_span(data_root: str) -> Optional[int]:
    """The newest span under a local or gs:// data root."""
    if '://' not in data_root:
        spans = data.span_dirs(data_root)
        return spans[-1][0] if spans else None
    import tensorflow as tf
    names = [name.rstrip('/') for name in tf.io.gfile.listdir(data_root)] if tf.io.gfile.isdir(data_root) else []
    return max((int(m.group(1)) for name in names if (m := data.SPAN_DIR.match(name))), default=None)


@dataclasses.dataclass(frozen=True)
class Decision:
    trigger: Optional[Trigger]
    # Why nothing is due, or what is held back (cooldown): for the scheduler's log.
    note: str = ''


def due(store, data_root: str, policy: Policy, now_ms: int) -> Decision:
    """The trigger of the run due now, if any."""
    if policy.watch_spans:
        latest, trained = latest_span(data_root), trained_span(store)
        if latest is not None and (trained is None or latest > trained):
            return Decision(Trigger(NEW_SPAN, {'span': latest, 'last_trained_span': trained}))
    if policy.on_alerts:
        last_ms = last_run_started_ms(store, policy.run_context_type)
        pending = pending_alerts(store, last_ms, policy.alert_kinds)
        if pending:
            wait = last_ms / 1000 + policy.cooldown_seconds - now_ms / 1000
            if wait > 0:
                return Decision(None, f'{len(pending)} monitoring pass(es) alerted; cooling down for {wait:.0f} s more '
                                      'after the last run')
            kinds, _ = alerts.kinds_and_features(a for result in pending for a in result['alerts'])
            return Decision(Trigger(ALERT, {
                'kinds': kinds, 'model_versions': sorted({r['model_version'] for r in pending}),
                'monitoring_results': [r['monitoring_result'] for r in pending],
                'alerts': [a for r in pending for a in r['alerts']][:20]}))
    return Decision(None, 'nothing due')
