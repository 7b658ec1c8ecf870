"""Why a run happened, recorded with the run in ML Metadata.

A run is started by hand, by a schedule, by a new span arriving in the data
root, or by monitoring alerts; the pipeline_run context carries the trigger's
kind and what exactly fired it (the cron expression, the span, the alerts
and the monitoring passes that raised them), so "why did this run happen" is
answered from the same record as everything else about it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional

from ml_metadata.proto import metadata_store_pb2

MANUAL, SCHEDULE, NEW_SPAN, ALERT = 'manual', 'schedule', 'new_span', 'alert'
KINDS = (MANUAL, SCHEDULE, NEW_SPAN, ALERT)
_KIND, _DETAIL = 'trigger', 'trigger_detail'


@dataclasses.dataclass(frozen=True)
class Trigger:
    kind: str = MANUAL
    # JSON-serialisable: what fired it.
    detail: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'trigger must be one of {", ".join(KINDS)}, not {self.kind!r}')

    def describe(self) -> str:
        return self.kind + (f' {json.dumps(self.detail, sort_keys=True)}' if self.detail else '')


def record(store, run: metadata_store_pb2.Context, trigger: Trigger) -> None:
    run.custom_properties[_KIND].string_value = trigger.kind
    run.custom_properties[_DETAIL].string_value = json.dumps(trigger.detail, sort_keys=True)
    store.put_contexts([run])


def read(run: metadata_store_pb2.Context) -> Optional[Trigger]:
    if _KIND not in run.custom_properties:
        return None
    detail = run.custom_properties[_DETAIL].string_value if _DETAIL in run.custom_properties else ''
    return Trigger(run.custom_properties[_KIND].string_value, json.loads(detail or '{}'))
