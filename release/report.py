"""The release history as a page: which version served production when, who decided, and why.

A timeline of every version a serving label ever named (spans coloured by
label: stable, canary, rollback; one mark per decision), the versions as `models list` shows them,
and every decision with its evidence; a history that does not verify, or a
serving config whose labels differ from it, is stated at the top. Gathered
here, laid out by `reports` (templates/registry.html).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

from release import ledger, registry as registry_lib
from reports import page as reports_page
from reports.formatting import metric_text

# By serving label: `rollback` is the previous stable, loaded and ready.
COLOURS = {registry_lib.STABLE: '#3a9a5b', registry_lib.CANARY: '#e08a2c', registry_lib.ROLLBACK_LABEL: '#b8c4cc'}


_when = ledger.format_time


def spans(decisions: List[ledger.Decision], until_micros: int) -> Dict[int, List[tuple]]:
    """Per version, (start, end, label) for each time a serving label named it, from the labels of each
    decision that took effect."""
    found: Dict[int, List[tuple]] = {}
    effects = registry_lib.effects(decisions)
    times = [at for at, _ in effects] + [until_micros]
    for (at, labels), end in zip(effects, times[1:]):
        for label, version in labels.items():
            found.setdefault(version, []).append((at, end, label))
    return found


def page(model_base_path: str, decisions: List[ledger.Decision], rows: Sequence[Dict], problems: Sequence[str],
         now_micros: Optional[int] = None, path: Optional[str] = None) -> str:
    """The page; `path`, where it is written, for links to the reports beside it (each version's lineage
    and model card, where they exist)."""
    now_micros = now_micros or ledger.now_micros()
    served = None
    if decisions:
        start = decisions[0].at_micros
        timeline = spans(decisions, now_micros)
        served = {'rows': {f'v{version}': timeline[version] for version in sorted(timeline)},
                  'x_range': (start, now_micros), 'colours': COLOURS,
                  'x_labels': {start: _when(start, precise=False), now_micros: _when(now_micros, precise=False)},
                  'marks': [(d.at_micros, f'#{d.sequence} {d.action} {d.model_version} by {d.actor}: {d.reason}')
                            for d, _ in registry_lib.with_outcomes(decisions)]}
    directory = os.path.dirname(path) if path else None
    here = os.path.basename(path) if path else reports_page.report_file(reports_page.REGISTRY)
    state = registry_lib.replay(decisions)
    serving = [v for v in (state.stable, state.canary) if v is not None]
    return reports_page.render(
        'registry.html', title='Model registry', nav=reports_page.related(directory, here, versions=serving),
        model_base_path=model_base_path, decision_count=len(decisions), now=_when(now_micros), problems=problems,
        served=served,
        version_rows=[[r['version'], r['stage'], r['blessed'], r['drift'] or '-', metric_text(r['eval_auc']),
                       metric_text(r['live_auc']), r['live_labelled'], r['pushed'], r['approval'] or '-']
                      for r in rows],
        decision_rows=[[d.sequence, _when(d.at_micros), d.action, d.model_version, d.actor, d.ran_as,
                        ', '.join(f'{v}: {a} → {b}' for v, (a, b) in sorted(d.changes.items())) or '-',
                        ', '.join(f'{k}={v}' for k, v in sorted(d.labels.items())) or '-', d.canary_percent,
                        registry_lib.outcome_text(d, confirmation), d.reason, evidence_text(d.evidence)]
                       for d, confirmation in reversed(registry_lib.with_outcomes(decisions))],
        # Every version's lineage and card that exists, not only those serving now.
        others=reports_page.links(directory, [
            (f'{kind} of {r["version"]}', reports_page.report_file(name, r['version']))
            for r in rows if r['version'] not in serving
            for kind, name in (('lineage', reports_page.LINEAGE), ('model card', reports_page.MODEL_CARD))]))


def evidence_text(evidence: Dict) -> str:
    """What a decision rested on: a canary test's recommendation and AUC, else each key: its value as JSON."""
    test = evidence.get('canary_test')
    if test:
        auc = next((d for d in test.get('differences', []) if d.get('metric') == 'auc'), None)
        shown = f'canary test: {test["recommendation"]}'
        if auc:
            shown += f' (AUC {auc["canary"]:.4f} vs {auc["stable"]:.4f}, p worse {auc["p_worse"]:.3g})'
        return shown
    return '; '.join(f'{k}: {json.dumps(v)}' for k, v in sorted(evidence.items())) if evidence else '-'
