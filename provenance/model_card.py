"""A model card per pushed version: the page a reviewer reads before approving it.

The sections mirror the Model Card Toolkit's (model details, intended use,
data, quantitative analysis, considerations), without the package: it pins
versions that cannot be installed beside TFMA 0.47. Two sources, never mixed:

- the prose people own (owners, intended use and users, out-of-scope uses,
  ethical considerations, caveats): a small YAML template,
  `provenance/model_card.yaml`, checked when loaded;
- every fact and number: ML Metadata, through the version's lineage
  (`provenance.lineage`), and the inputs and label from `taxi_model.features`.
  Nothing measured is typed into the template, so a card cannot show a number
  its version did not have.

The limitations are computed, not written: slices with too few eval examples
to judge, slices with one class only (AUC undefined), slices of a gated column
with a handful of one class, slices well below the overall AUC, training on
drifted data, data anomalies, a changed schema, a release history that does
not verify, and what monitoring has (or has not yet) seen in serving.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from components import slice_gates as slice_gates_lib
from components.artifact_contents import OVERALL, slice_order
from foundation.alerts import alert_text
from release.ledger import format_time
from release.report import evidence_text
from reports import page as reports_page
from reports.formatting import count_text, finite, metric_text
from taxi_model import features as features_lib

TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'model_card.yaml')
TEMPLATE_KEYS = ('owners', 'intended_use', 'intended_users', 'out_of_scope_uses', 'ethical_considerations',
                 'caveats')
# A slice with fewer eval examples than this is not judged: with ~30% positives, a hundred examples leave
# an AUC uncertain by several hundredths, as much as the differences the card would point at.
MIN_SLICE_EXAMPLES = 100
# A slice of a gated column (whose examples of each class the Evaluator counts) with fewer eval examples of a class
# than this is not judged either: its AUC rests on a handful (cash trips: a few tips among thousands).
MIN_CLASS_EXAMPLES = 30
# A judged slice whose AUC is this far below the overall AUC is named as a weakness.
AUC_GAP = 0.05
# The metrics the card shows, in TFMA's names, with the words a reader knows them by.
METRICS = (('auc', 'AUC'), ('binary_accuracy', 'accuracy'), ('precision', 'precision'), ('recall', 'recall'))


# -- the template: prose a person owns ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Owner:
    name: str
    contact: str


@dataclasses.dataclass(frozen=True)
class Template:
    owners: Tuple[Owner, ...]
    intended_use: str
    intended_users: Tuple[str, ...]
    out_of_scope_uses: Tuple[str, ...]
    ethical_considerations: Tuple[str, ...]
    caveats: Tuple[str, ...]
    # The file it was read from (shown on the card: where to change the prose).
    source: str = ''


def load_template(path: str = TEMPLATE_PATH) -> Template:
    """The card's prose from a YAML file; ValueError naming what is missing, unknown or empty."""
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f'model card template {path}: cannot read it ({e.strerror})') from e
    except yaml.YAMLError as e:
        raise ValueError(f'model card template {path} is not valid YAML: {e}') from e
    return template_from(data, path)


def template_from(data, source: str = '(given)') -> Template:
    """A Template from parsed YAML. Unknown keys are refused too: a misspelt key would vanish silently,
    and a number typed in (an AUC, say) has no place on a card whose numbers come from ML Metadata."""
    if not isinstance(data, Mapping):
        raise ValueError(f'model card template {source}: expected a mapping with the keys '
                         f'{", ".join(TEMPLATE_KEYS)}, not {type(data).__name__}')
    missing = [k for k in TEMPLATE_KEYS if k not in data]
    unknown = sorted(str(k) for k in data if k not in TEMPLATE_KEYS)
    problems = ([f'missing key{"s" * (len(missing) > 1)} {", ".join(missing)}'] if missing else []) + (
        [f'unknown key{"s" * (len(unknown) > 1)} {", ".join(unknown)} (expected only {", ".join(TEMPLATE_KEYS)}; '
         'metrics and data come from ML Metadata)'] if unknown else [])
    if problems:
        raise ValueError(f'model card template {source}: {"; ".join(problems)}')
    return Template(owners=_owners(data['owners'], source), intended_use=_text(data['intended_use'], 'intended_use',
                                                                               source),
                    **{k: _texts(data[k], k, source) for k in TEMPLATE_KEYS[2:]}, source=source)


def _text(value, key: str, source: str) -> str:
    # Empty is refused like missing: a card that says nothing where it should looks complete and is not.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'model card template {source}: {key} must be non-empty text')
    return ' '.join(value.split())


def _texts(value, key: str, source: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'model card template {source}: {key} must be a non-empty list of texts '
                         '(if there is nothing to say, say so in one item)')
    return tuple(_text(item, f'{key}[{i}]', source) for i, item in enumerate(value))


def _owners(value, source: str) -> Tuple[Owner, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'model card template {source}: owners must be a non-empty list of {{name, contact}}')
    found = []
    for i, owner in enumerate(value):
        if not isinstance(owner, Mapping):
            raise ValueError(f'model card template {source}: owners[{i}] must have a name and a contact')
        found.append(Owner(*(_text(owner.get(k), f'owners[{i}].{k}', source) for k in ('name', 'contact'))))
    return tuple(found)


# -- the card: facts from ML Metadata --------------------------------------------------------------------


@dataclasses.dataclass
class SliceMetrics:
    name: str
    examples: Optional[int]
    candidate: Dict[str, Optional[float]]
    baseline: Dict[str, Optional[float]]
    # Why the slice is not judged or stands out ('' when judged and unremarkable).
    note: str = ''


@dataclasses.dataclass
class Gate:
    """One blessing threshold the Evaluator applied to the overall slice."""

    parameter: str
    rule: str
    required: Optional[float]
    measured: Optional[float]
    # None: not applied (no baseline to compare with) or not measurable.
    passed: Optional[bool]


@dataclasses.dataclass
class Limitation:
    finding: str
    detail: str
    # The slices, features, splits or passes it is about.
    subjects: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Card:
    template: Template
    name: str
    version: int
    stage: str
    pushed_at: str
    destination: str
    model_base_path: str
    code: Optional[Dict]
    run: Optional[Dict]
    training: Dict
    transform: Optional[Dict]
    schema: Optional[Dict]
    # What it predicts and from what: taxi_model.features.
    label: str
    inputs: List[Dict]
    ignored_columns: List[str]
    data: Optional[Dict]
    statistics: List[Dict]
    # The evaluation.
    thresholds: Dict[str, Optional[float]]
    baseline_version: Optional[int]
    blessed: Optional[bool]
    gates: List[Gate]
    # The slice gates as the Evaluator applied them (components/slice_gates.py), the gated columns' slices with
    # their counts, the examples of each class a slice needed to be judged, and why the Evaluator refused it.
    slice_gates: List[slice_gates_lib.Gate]
    gated_slices: List[slice_gates_lib.SliceCount]
    min_slice_class_examples: Optional[int]
    refusal: Optional[str]
    overall: Optional[SliceMetrics]
    slices: List[SliceMetrics]
    # The infra validation (components/infra_validator): blessed, reason, figures, every check; {} before it existed.
    infra_validation: Dict
    # Release history.
    approvals: List[Dict]
    stage_history: List[Dict]
    history_problems: List[str]
    live: List[Dict]
    # Computed limitations; the slice lists are by slice name.
    min_slice_examples: int
    auc_gap: float
    too_few: List[str]
    one_class: List[str]
    # Slices of a gated column with fewer than MIN_CLASS_EXAMPLES eval examples of a class.
    few_of_a_class: List[str]
    weak: List[str]
    limitations: List[Limitation]

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)


def card(lineage, template: Template, data: Optional[Dict] = None) -> Card:
    """The card of a traced version (`lineage.trace`). `data`: its `to_dict()` if the caller already has
    it (making it reads statistics and metrics from disk)."""
    data = lineage.to_dict() if data is None else data
    evaluation = data.get('evaluation') or {}
    overall, slices = _slices(evaluation.get('slices') or {})
    gated_slices = [slice_gates_lib.SliceCount(**c) for c in evaluation.get('gated_slices') or []]
    minimum = evaluation.get('min_slice_class_examples')
    too_few, one_class, few_of_a_class, weak = _unjudged(slices, overall, gated_slices)
    training = data.get('training') or {}
    found = Card(
        template=template, name=os.path.basename(lineage.model_base_path.rstrip('/')), version=data['version'],
        stage=data['stage'], pushed_at=data['pushed']['at'], destination=data['pushed']['destination'],
        model_base_path=lineage.model_base_path, code=data.get('code'), run=data.get('run'), training=training,
        transform=data.get('transform'), schema=data.get('schema'), label=describe_label(),
        inputs=describe_inputs(), ignored_columns=sorted(features_lib.IGNORED_COLUMNS),
        # The full statistics stay on the lineage page; the card keeps its summary of the columns the model reads.
        data={k: v for k, v in data['data'].items() if k != 'statistics'} if data.get('data') else None,
        statistics=_statistics((data.get('data') or {}).get('statistics') or []),
        thresholds=evaluation.get('thresholds') or {}, baseline_version=evaluation.get('baseline_version'),
        blessed=evaluation.get('blessed'), gates=_gates(evaluation.get('thresholds') or {}, overall),
        slice_gates=[g for g in map(slice_gates_lib.gate_from, evaluation.get('gates') or [])
                     if g.slice != slice_gates_lib.OVERALL],
        gated_slices=gated_slices, min_slice_class_examples=minimum, refusal=evaluation.get('refusal'),
        overall=overall, slices=slices, infra_validation=data.get('infra_validation') or {},
        approvals=data.get('approvals') or [],
        stage_history=data.get('stage_history') or [], history_problems=data.get('history_problems') or [],
        live=data.get('live') or [], min_slice_examples=MIN_SLICE_EXAMPLES, auc_gap=AUC_GAP, too_few=too_few,
        one_class=one_class, few_of_a_class=few_of_a_class, weak=weak, limitations=[])
    found.limitations = limitations(found)
    return found


def describe_label() -> str:
    label = features_lib.LABEL
    return (f'{label.name}: 1 when the tip ({label.tips_column}) is more than {label.tip_fraction:.0%} of the fare '
            f'({label.fare_column}), else 0. Transform derives it from the two columns; the model outputs its '
            'probability.')


def describe_inputs() -> List[Dict]:
    """The model's inputs, as taxi_model.features declares them."""
    return [{'name': f.name, 'type': f.raw_type.value, 'encoding': _encoding(f),
             'slice': f.name in features_lib.SLICE_COLUMNS} for f in features_lib.FEATURES]


def _encoding(feature: features_lib.Feature) -> str:
    encoding = features_lib.Encoding
    return {encoding.SCALED: 'z-score (missing: the mean)' + (f', also one-hot in {feature.steps} fixed bins'
                                                               if feature.steps else ''),
            encoding.BUCKETIZED: f'{feature.buckets} quantile buckets',
            encoding.IDENTITY: f'category ids 0-{feature.cardinality - 1}',
            encoding.VOCABULARY: f'vocabulary of {feature.vocab_size} + {feature.oov_buckets} hashed buckets',
            }[feature.encoding]


def _slice_key(name: str):
    """Slices by feature in SLICE_COLUMNS order (as the features declare them), then in the usual slice order."""
    column, columns = name.partition('=')[0], features_lib.SLICE_COLUMNS
    return (columns.index(column) if column in columns else len(columns)), slice_order(name)


def _slices(found: Mapping[str, Mapping]) -> Tuple[Optional[SliceMetrics], List[SliceMetrics]]:
    def metrics(name: str) -> SliceMetrics:
        entry = found[name]
        candidate = {k: finite(v) for k, v in (entry.get('candidate') or {}).items()}
        baseline = {k: finite(v) for k, v in (entry.get('baseline') or {}).items()}
        count = candidate.get('example_count')
        return SliceMetrics(name, int(count) if count is not None else None, candidate, baseline)
    overall = metrics(OVERALL) if OVERALL in found else None
    return overall, [metrics(name) for name in sorted((n for n in found if n != OVERALL), key=_slice_key)]


def auc_undefined(metrics: Mapping[str, Optional[float]]) -> bool:
    """A slice with one class only: no positives (recall NaN), or an AUC TFMA could not compute (NaN, or
    0 as TFMA reports a slice without one of the classes)."""
    auc = metrics.get('auc')
    return auc is None or auc == 0.0 or ('recall' in metrics and metrics['recall'] is None)


def _unjudged(slices: List[SliceMetrics], overall: Optional[SliceMetrics],
              gated_slices: Sequence[slice_gates_lib.SliceCount] = ()
              ) -> Tuple[List[str], List[str], List[str], List[str]]:
    """(too few examples, one class only, a handful of one class, AUC well below overall): each slice in at
    most one, in that order, and its note set; a slice the Evaluator gated says so."""
    too_few, one_class, few_of_a_class, weak = [], [], [], []
    overall_auc = overall.candidate.get('auc') if overall else None
    counted = {c.label: c for c in gated_slices}
    for found in slices:
        count = counted.get(found.name)
        if found.examples is None or found.examples < MIN_SLICE_EXAMPLES:
            too_few.append(found.name)
            found.note = f'no: fewer than {MIN_SLICE_EXAMPLES} examples'
        elif auc_undefined(found.candidate):
            one_class.append(found.name)
            found.note = 'no: one class only (AUC undefined)'
        elif count is not None and min(count.positives, count.negatives) < MIN_CLASS_EXAMPLES:
            few_of_a_class.append(found.name)
            found.note = (f'no: {count.positives} positive, {count.negatives} negative, fewer than '
                          f'{MIN_CLASS_EXAMPLES} of a class')
        elif overall_auc is not None and found.candidate['auc'] < overall_auc - AUC_GAP:
            weak.append(found.name)
            found.note = f'yes: AUC {overall_auc - found.candidate["auc"]:.3f} below overall'
        if count is not None and count.judged:
            found.note = (found.note + '; gated') if found.note else 'yes, gated'
    return too_few, one_class, few_of_a_class, weak


def _gates(thresholds: Mapping[str, Optional[float]], overall: Optional[SliceMetrics]) -> List[Gate]:
    """The Evaluator's gates (components/evaluator.py: overall slice only), re-read against the metrics."""
    if not thresholds:
        return []
    candidate = overall.candidate if overall else {}
    baseline = overall.baseline if overall else {}

    def at_least(parameter, rule, required, measured):
        passed = None if required is None or measured is None else measured >= required - 1e-12
        return Gate(parameter, rule, required, measured, passed)
    gates = [at_least('min_auc', 'overall AUC at least', thresholds.get('min_auc'), candidate.get('auc')),
             at_least('min_accuracy', 'overall accuracy at least', thresholds.get('min_accuracy'),
                      candidate.get('binary_accuracy'))]
    drop, base_auc = thresholds.get('max_auc_drop'), baseline.get('auc')
    if drop is not None and base_auc is not None:
        gates.append(at_least('max_auc_drop', f'overall AUC at least the baseline\'s ({base_auc:.4f}) minus {drop:g}',
                              base_auc - drop, candidate.get('auc')))
    else:
        gates.append(Gate('max_auc_drop', 'overall AUC at most this far below the baseline\'s: not applied, no '
                          'baseline (the first push)', drop, None, None))
    return gates


def _statistics(rows: List[Dict]) -> List[Dict]:
    """The training split's statistics of the columns the model reads: its inputs and the label's sources."""
    by_name = {r['feature']: r for r in rows}
    label = features_lib.LABEL
    wanted = [f.name for f in features_lib.FEATURES] + [c for c in (label.tips_column, label.fare_column)
                                                         if c not in {f.name for f in features_lib.FEATURES}]
    sources = {label.tips_column, label.fare_column}
    found = []
    for name in wanted:
        row = by_name.get(name)
        if row is None:
            found.append({'feature': name, 'role': _role(name, sources), 'type': '-', 'missing': None,
                          'summary': 'no statistics recorded'})
            continue
        total = (row['present'] or 0) + (row['missing'] or 0)
        found.append({'feature': name, 'role': _role(name, sources), 'type': row['type'],
                      'missing': row['missing'] / total if total else None, 'summary': _summary(row)})
    return found


def _role(name: str, label_sources) -> str:
    is_input = name in {f.name for f in features_lib.FEATURES}
    return ' and '.join((['input'] if is_input else []) + (['label source'] if name in label_sources else []))


def _summary(row: Mapping) -> str:
    if row.get('mean') is not None:
        return (f'mean {row["mean"]:.4g}, std {row["std"]:.4g}, range {row["min"]:.4g} to {row["max"]:.4g}')
    top = row.get('top values') or ''
    return f'{row.get("unique") or 0} distinct' + (f'; most frequent: {top}' if top else '')


# -- limitations, computed -------------------------------------------------------------------------------


def limitations(card_: Card) -> List[Limitation]:
    """What a reader must know before trusting the numbers, in the order it matters."""
    found = []
    for finder in (_blessing_limits, _drift_limits, _slice_limits, _baseline_limits, _data_limits,
                   _history_limits, _live_limits):
        found.extend(finder(card_))
    return found


def _blessing_limits(c: Card) -> List[Limitation]:
    if c.overall is None:
        return [Limitation('No evaluation recorded', 'ML Metadata has no Evaluator output for the run that pushed '
                           'this version: none of its quality is known.')]
    if c.blessed is False:
        why = f'The Evaluator refused it: {c.refusal}.' if c.refusal else 'It failed a gate below.'
        return [Limitation('Not blessed', f'The Evaluator did not bless this version. {why}',
                           sorted({g.slice for g in c.slice_gates if g.passed is False}))]
    return []


def _drift_limits(c: Card) -> List[Limitation]:
    verdict, drifted = c.training.get('drift_verdict'), list(c.training.get('drift_features') or [])
    if verdict == 'drift':
        return [Limitation('Trained on drifted data',
                           f'The drift check found the training data of this version drifted from that of the '
                           f'latest pushed version when it ran, in {", ".join(drifted) or "(features not recorded)"}. '
                           'Its evaluation used the same new data, so the metrics do not say how it does on '
                           'traffic like the old. ' + _drift_review(c), drifted)]
    if verdict is None and c.run is not None:
        return [Limitation('No drift verdict', 'No drift check is recorded for the run that trained it: nobody '
                           'compared its training data with what served before.')]
    return []


def _drift_review(c: Card) -> str:
    """Who reviewed the drift (an approval recorded with drift_reviewed), else that nobody has yet."""
    reviews = [a for a in c.approvals if a['action'] == 'approve' and (a.get('evidence') or {}).get('drift_reviewed')]
    if not reviews:
        return 'Nobody has reviewed the drift yet: approving it needs a drift review.'
    return ' '.join(f'{a["actor"]} reviewed the drift and approved it on {a["at"]} UTC ("{a["reason"]}").'
                    for a in reviews)


def _slice_limits(c: Card) -> List[Limitation]:
    found = []
    overall_auc = c.overall.candidate.get('auc') if c.overall else None
    if c.weak:
        found.append(Limitation('Slices well below overall AUC',
                                f'{len(c.weak)} slice(s) with at least {c.min_slice_examples} eval examples have '
                                f'an AUC more than {c.auc_gap:g} below the overall {overall_auc:.4f}: '
                                f'{_slice_list(c, c.weak)}.', list(c.weak)))
    if c.one_class:
        found.append(Limitation('AUC undefined in some slices',
                                f'{len(c.one_class)} slice(s) have only one class among their eval examples, so '
                                f'their AUC (and precision or recall) says nothing: '
                                f'{_slice_list(c, c.one_class, show_auc=False)}.',
                                list(c.one_class)))
    if c.few_of_a_class:
        found.append(Limitation('A handful of one class',
                                f'{len(c.few_of_a_class)} slice(s) of a gated column have fewer than '
                                f'{MIN_CLASS_EXAMPLES} eval examples of a class, so their AUC says little and no '
                                f'gate judged them: {_slice_list(c, c.few_of_a_class)}.', list(c.few_of_a_class)))
    if c.too_few:
        found.append(Limitation('Slices too small to judge',
                                f'{len(c.too_few)} of {len(c.slices)} slices have fewer than {c.min_slice_examples} '
                                f'eval examples; their metrics are shown but not judged.', list(c.too_few)))
    return found


def _slice_list(c: Card, names: Iterable[str], show_auc: bool = True) -> str:
    by_name = {s.name: s for s in c.slices}

    def one(name: str) -> str:
        auc = f'AUC {metric_text(by_name[name].candidate.get("auc"))}, ' if show_auc else ''
        return f'{name} ({auc}{by_name[name].examples} examples)'
    return ', '.join(one(n) for n in names)


def _baseline_limits(c: Card) -> List[Limitation]:
    if c.overall is None or c.baseline_version is None:
        return []
    candidate, baseline = c.overall.candidate.get('auc'), c.overall.baseline.get('auc')
    if candidate is None or baseline is None or candidate >= baseline:
        return []
    return [Limitation('Below its baseline', f'Overall AUC {candidate:.4f} is {baseline - candidate:.4f} below '
                       f'that of version {c.baseline_version} ({baseline:.4f}) on the same eval data; the gate allowed '
                       f'a drop of up to {c.thresholds.get("max_auc_drop")}.', [str(c.baseline_version)])]


def _data_limits(c: Card) -> List[Limitation]:
    found = []
    anomalies = (c.data or {}).get('anomalies') or {}
    lines = [f'{split}: {line}' for split, found_lines in sorted(anomalies.items()) for line in found_lines]
    if lines:
        found.append(Limitation('Data anomalies', 'ExampleValidator found, against the curated schema: '
                                + '; '.join(lines) + '.', sorted(s for s, f in anomalies.items() if f)))
    schema = c.schema or {}
    if schema.get('changed'):
        differences = schema.get('differences') or []
        found.append(Limitation('Schema changed', f'The schema differs from the one version '
                                f'{schema.get("previous_version")} was validated against'
                                + (': ' + '; '.join(differences) if differences else '.'),
                                [str(schema.get('previous_version'))]))
    return found


def _history_limits(c: Card) -> List[Limitation]:
    if not c.history_problems:
        return []
    return [Limitation('Release history does not verify', 'The recorded release decisions fail their checks, so '
                       'the stage and approvals on this card may not be what was decided: '
                       + '; '.join(c.history_problems) + '.')]


def _live_limits(c: Card) -> List[Limitation]:
    if not c.live:
        return [Limitation('Not monitored in serving yet', 'No monitoring pass over its served traffic is recorded: '
                           'nothing is known of how it does live (no live labels yet).')]
    found = []
    labelled = sum(p.get('labelled_examples') or 0 for p in c.live)
    if not labelled:
        found.append(Limitation('No live labels yet', f'{len(c.live)} monitoring pass(es) saw '
                                f'{sum(p.get("examples") or 0 for p in c.live)} served requests, none labelled by '
                                'feedback yet: live AUC and accuracy are unknown.'))
    alerts = sorted({alert_text(a) for p in c.live for a in (p.get('findings') or {}).get('alerts') or []})
    if alerts:
        windows = sum(1 for p in c.live if p.get('alerts'))
        found.append(Limitation('Monitoring alerted', f'{windows} of {len(c.live)} monitoring window(s) alerted: '
                                + '; '.join(alerts) + '.', alerts))
    return found


# -- the page --------------------------------------------------------------------------------------------


def _auc(metrics: Mapping[str, Optional[float]]) -> str:
    # TFMA's 0 for a slice with one class is no AUC at all: a reader would take it for the worst model.
    return 'undefined' if metrics and auc_undefined(metrics) else metric_text(metrics.get('auc'))


def page(card_: Card, reports_dir: Optional[str] = None) -> str:
    """The card as a self-contained HTML page; links to the version's lineage, run report and the registry
    where those pages exist in `reports_dir`."""
    here = reports_page.report_file(reports_page.MODEL_CARD, card_.version)
    nav = reports_page.related(reports_dir, here, runs=[card_.run['name']] if card_.run else [],
                               versions=[card_.version])
    return reports_page.render(
        'model_card.html', title=f'Model card {card_.name} {card_.version}', nav=nav, card=card_,
        glance=_glance(card_), details=_details(card_), intended_use=_intended_use(card_), inputs=_inputs(card_),
        training_data=_training_data(card_), quantitative=_quantitative(card_), infra=_infra(card_),
        approvals=_approvals(card_),
        live=_live(card_), considerations=_considerations(card_),
        made_from=f'Made from ML Metadata (the version\'s lineage) and {_shown_path(card_.template.source)} '
                  '(the prose). Numbers are as recorded; nothing here was typed in.')


def _infra(c: Card) -> Optional[Dict]:
    """Served before it was pushed: the verdict, the figures against their limits, the behaviour cases."""
    infra = c.infra_validation
    if not infra:
        return None
    limits = infra.get('limits') or {}
    latency = infra.get('latency_ms') or {}
    figures = [('load', f'{infra["load_seconds"]:.1f} s' if infra.get('load_seconds') is not None else '-',
                f'{limits.get("max_load_seconds", "-")} s'),
               *[(f'{protocol} p50 / p99', f'{v["p50"]:.1f} / {v["p99"]:.1f} ms',
                  f'p99 {limits.get("max_p99_ms", "-")} ms') for protocol, v in sorted(latency.items())],
               ('memory', f'{infra["memory_mb"]:.0f} MB' if infra.get('memory_mb') is not None else '-',
                f'{limits.get("max_memory_mb", "-")} MB')]
    return {'blessed': infra.get('blessed'), 'reason': infra.get('reason'), 'figures': [list(f) for f in figures],
            'checks': [[ch['name'], 'pass' if ch['passed'] else 'FAIL', ch['detail']]
                       for ch in infra.get('checks', [])]}


def _shown_path(path: str) -> str:
    """The template's path relative to the repository when it is the repository's (where to change the prose)."""
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not path:
        return 'a template'
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, repository) if absolute.startswith(repository + os.sep) else path


def _glance(c: Card) -> List[Tuple[str, object]]:
    auc = c.overall.candidate.get('auc') if c.overall else None
    baseline_auc = c.overall.baseline.get('auc') if c.overall else None
    versus = (f' (baseline version {c.baseline_version}: {metric_text(baseline_auc)})'
              if c.baseline_version is not None else '')
    approved = [a for a in c.approvals if a['action'] == 'approve']
    return [
        ('predicts', f'whether a tip is more than {features_lib.LABEL.tip_fraction:.0%} of the fare'),
        ('stage', c.stage),
        ('blessed by the Evaluator', {True: 'yes', False: 'NO', None: 'unknown'}[c.blessed]),
        ('overall eval AUC', metric_text(auc) + versus),
        ('slice gates', _slice_gates_glance(c)),
        ('approved by', ', '.join(a['actor'] for a in approved) or 'nobody yet'),
        ('limitations found', f'{len(c.limitations)}: ' + '; '.join(l.finding for l in c.limitations)
         if c.limitations else 'none'),
    ]


def _slice_gates_glance(c: Card) -> str:
    if not c.gated_slices:
        return 'not recorded (evaluated before the slice gates)'
    failed = [g for g in c.slice_gates if g.passed is False]
    if failed:
        return 'FAILED: ' + '; '.join(g.describe() for g in failed)
    judged = [s.label for s in c.gated_slices if s.judged]
    if not judged:
        return 'no slice had enough eval examples of each class to be judged'
    nearest = slice_gates_lib.closest(c.slice_gates)
    return f'passed on {", ".join(judged)}' + (f' (closest: {nearest.describe()})' if nearest else '')


def _details(c: Card) -> List[Tuple[str, object]]:
    training = c.training
    pairs = [('name', c.name), ('version', c.version), ('stage', c.stage), ('pushed (UTC)', c.pushed_at),
             ('push destination', c.destination)] + _code_facts(c.code) + _run_facts(c.run) + [
        ('trainer', f'{training.get("run_fn") or "-"}: {training.get("train_steps")} training steps, '
                    f'{training.get("eval_steps")} eval steps' if training else 'not recorded'),
        ('transform', (c.transform or {}).get('preprocessing_fn') or '-'),
        ('schema sha256', ((c.schema or {}).get('sha256') or '-')[:16] + _schema_change(c.schema))]
    pairs += [(f'hyperparameter {k}', v) for k, v in sorted((training.get('hyperparameters') or {}).items())]
    return pairs


def _code_facts(code: Optional[Dict]) -> List[Tuple[str, object]]:
    if not code:
        return [('code', 'not recorded')]
    # None: no git where it ran, as in the pipeline image, which is built from a commit.
    dirty = {True: 'yes: trained from a tree with uncommitted changes', False: 'no',
             None: 'not known (no git where it ran: an image is built from a commit)'}[code.get('dirty')]
    return [('code commit', code.get('commit') or 'not recorded'), ('uncommitted changes', dirty),
            ('image', code.get('image') or '-'), ('package version', code.get('package_version') or '-'),
            ('TFX version', code.get('tfx_version') or '-'),
            ('component code sha256', code.get('source_digest') or '-')]


def _run_facts(run: Optional[Dict]) -> List[Tuple[str, object]]:
    if not run:
        return [('training run', 'not recorded')]
    trigger = run.get('trigger') or {}
    detail = f' {json.dumps(trigger["detail"], sort_keys=True)}' if trigger.get('detail') else ''
    return [('training run', f'{run["name"]} (started {run.get("started", "-")} UTC, {run.get("seconds") or 0:.0f} s, '
                             f'{run.get("outcome", "-")})'),
            ('trigger', trigger.get('kind', 'not recorded') + detail)]


def _schema_change(schema: Optional[Dict]) -> str:
    if not schema or schema.get('previous_version') is None:
        return ''
    return (f' ({"changed" if schema.get("changed") else "unchanged"} since version '
            f'{schema["previous_version"]})')


def _intended_use(c: Card) -> Dict:
    t = c.template
    return {'text': t.intended_use, 'owners': ', '.join(f'{o.name} <{o.contact}>' for o in t.owners),
            'users': t.intended_users, 'out_of_scope': t.out_of_scope_uses}


def _inputs(c: Card) -> Dict:
    return {'label': 'Label: ' + c.label,
            'rows': [[i['name'], i['type'], i['encoding'], 'yes' if i['slice'] else ''] for i in c.inputs],
            'ignored': f'In the data but not used: {", ".join(c.ignored_columns)}.'}


def _training_data(c: Card) -> Optional[Dict]:
    data = c.data
    if not data:
        return None
    rows = data.get('rows') or {}
    anomalies = data.get('anomalies') or {}
    return {
        'facts': [('span', data.get('span')), ('files', ', '.join(data.get('files') or []) or '(no longer on disk)'),
                  ('examples per split', ', '.join(f'{k} {v}' for k, v in sorted(rows.items(),
                                                                                 key=lambda kv: kv[0] != 'train'))
                   or '-'),
                  ('input fingerprint', data.get('input_fingerprint') or '-')],
        'statistics': [[s['feature'], s['role'], s['type'], _percent(s['missing']), s['summary']]
                       for s in c.statistics],
        'anomalies': [[split, line] for split, lines in sorted(anomalies.items()) for line in lines],
        'anomalies_recorded': bool(anomalies)}


def _quantitative(c: Card) -> Optional[Dict]:
    if c.overall is None:
        return None
    return {'gates': _gates_part(c), 'slice_gates': _slice_gates_part(c), 'overall': _overall_part(c),
            'slices': _slices_part(c)}


def _slice_gates_part(c: Card) -> Dict:
    """The slice gates as the Evaluator applied them (by how much each passed or failed), and the gated
    columns' slices it did not judge; None for an evaluation made before the slice gates."""
    if not c.gated_slices:
        return None
    rows = [[g.slice, g.gate, g.rule, f'{g.bound:g}', metric_text(g.measured),
             '-' if g.margin is None else f'{g.margin:+.4f}',
             {True: 'passed', False: 'FAILED', None: 'not applied (no baseline)'}[g.passed]] for g in c.slice_gates]
    unjudged = [[s.label, s.positives, s.negatives] for s in c.gated_slices if not s.judged]
    nearest = slice_gates_lib.closest(c.slice_gates)
    return {'rows': rows, 'unjudged': unjudged, 'minimum': c.min_slice_class_examples,
            'closest': f'Closest to refusing it: {nearest.describe()}.' if nearest else ''}


def _gates_part(c: Card) -> Dict:
    verdict = {True: ('The Evaluator blessed it: it passed every gate.', 'good'),
               False: ('The Evaluator did NOT bless it.', 'bad'),
               None: ('No blessing recorded.', 'bad')}[c.blessed]
    return {'rows': [[g.parameter, g.rule, metric_text(g.required), metric_text(g.measured),
                      {True: 'passed', False: 'FAILED', None: '-'}[g.passed]] for g in c.gates],
            'verdict': verdict[0], 'css': verdict[1]}


def _overall_part(c: Card) -> Dict:
    has_baseline = c.baseline_version is not None
    headers = ['metric', 'this version'] + ([f'baseline (version {c.baseline_version})', 'change']
                                            if has_baseline else [])
    rows = []
    for key, label in METRICS:
        value, base = c.overall.candidate.get(key), c.overall.baseline.get(key)
        row = [label, metric_text(value)]
        if has_baseline:
            row += [metric_text(base), '-' if value is None or base is None else f'{value - base:+.4f}']
        rows.append(row)
    return {'headers': headers, 'rows': rows}


def _slices_part(c: Card) -> Dict:
    has_baseline = c.baseline_version is not None
    series = ['this version'] + ([f'baseline {c.baseline_version}'] if has_baseline else [])
    muted = c.too_few + c.one_class + c.few_of_a_class
    headers = ['slice', 'examples', 'AUC'] + (['baseline AUC'] if has_baseline else []) + [
        'accuracy'] + (['baseline accuracy'] if has_baseline else []) + ['precision', 'recall', 'judged']
    rows = []
    for s in c.slices:
        row = [s.name, count_text(s.examples), _auc(s.candidate)]
        row += [_auc(s.baseline)] if has_baseline else []
        row += [metric_text(s.candidate.get('binary_accuracy'))]
        row += [metric_text(s.baseline.get('binary_accuracy'))] if has_baseline else []
        row += [metric_text(s.candidate.get('precision')), metric_text(s.candidate.get('recall')), s.note or 'yes']
        rows.append(row)
    return {'charts': [dict(label=label, **_slice_chart(c, key, series, label))
                       for key, label in (('auc', 'AUC'), ('binary_accuracy', 'accuracy'))],
            'series': series, 'muted': muted, 'headers': headers, 'rows': rows}


def _slice_chart(c: Card, key: str, series: Sequence[str], label: str) -> Dict:
    """The groups (overall, then each slice) and the dashed lines (the gate, the overall value) of a chart."""
    groups = {OVERALL: _pair(c.overall, key, series)}
    groups.update({s.name: _pair(s, key, series) for s in c.slices})
    gate = c.thresholds.get({'auc': 'min_auc', 'binary_accuracy': 'min_accuracy'}[key])
    marks = {**({f'min {label}': gate} if gate is not None else {}),
             **({'overall': c.overall.candidate[key]} if c.overall.candidate.get(key) is not None else {})}
    return {'groups': groups, 'marks': marks}


def _pair(s: SliceMetrics, key: str, series: Sequence[str]) -> Dict[str, Optional[float]]:
    # An undefined AUC is no bar at all ('n/a'), not a bar at TFMA's 0.
    undefined = key == 'auc' and auc_undefined(s.candidate)
    values = {series[0]: None if undefined else s.candidate.get(key)}
    if len(series) > 1:
        values[series[1]] = None if key == 'auc' and auc_undefined(s.baseline) else s.baseline.get(key)
    return values


def _approvals(c: Card) -> Dict:
    return {'decisions': [[d['at'], d['action'], d['actor'], d['reason'], evidence_text(d.get('evidence') or {})]
                          for d in c.approvals],
            'stages': [[d['at'], d['action'], d['actor'], f'{d["stage_before"]} → {d["stage_after"]}', d['reason']]
                       for d in c.stage_history],
            'problems': ('The release history does not verify: ' + '; '.join(c.history_problems)
                         if c.history_problems else '')}


def _live(c: Card) -> Optional[Dict]:
    if not c.live:
        return None
    labelled = [p for p in c.live if p.get('labelled_examples')]
    summary = (f'{len(c.live)} monitoring window(s) since the push: {sum(p.get("examples") or 0 for p in c.live)} '
               f'requests, {sum(p.get("labelled_examples") or 0 for p in c.live)} of them labelled by feedback'
               + (f'; latest live AUC {metric_text(labelled[-1].get("live_auc"))}, accuracy '
                  f'{metric_text(labelled[-1].get("live_accuracy"))}.' if labelled else '.'))
    rows = [[_window(p), p.get('examples', 0), _percent(p.get('outlier_rate')), p.get('labelled_examples', 0),
             metric_text(p.get('live_auc')), metric_text(p.get('live_accuracy')),
             metric_text(p.get('calibration_error')),
             '; '.join(map(alert_text, (p.get('findings') or {}).get('alerts') or [])) or '-']
            for p in c.live]
    return {'summary': summary, 'chart': _live_chart(c), 'rows': rows}


def _window(p: Mapping) -> str:
    """'2026-12-01 04:52 to 05:52': the end's date only when it differs from the start's."""
    start, end = format_time(p.get('window_start_micros'))[:16], format_time(p.get('window_end_micros'))[:16]
    return f'{start} to {end[11:] if end[:10] == start[:10] else end}'


def _percent(share) -> str:
    """A share as a percentage, '-' for none."""
    number = finite(share)
    return '-' if number is None else f'{number:.1%}'


def _live_chart(c: Card) -> Optional[Dict]:
    """Live AUC and accuracy per monitoring window, once two windows have labels to draw a line through."""
    labelled = [p for p in c.live if p.get('labelled_examples')]
    if len(labelled) < 2:
        return None
    series = {name: [(i, p[key]) for i, p in enumerate(labelled) if p.get(key) is not None]
              for key, name in (('live_auc', 'live AUC'), ('live_accuracy', 'live accuracy'))}
    ends = {0: format_time(labelled[0].get('window_end_micros')),
            len(labelled) - 1: format_time(labelled[-1].get('window_end_micros'))}
    return {'series': series, 'x_range': (0, max(1, len(labelled) - 1)), 'x_labels': ends,
            'gate': c.thresholds.get('min_auc')}


def _considerations(c: Card) -> Dict:
    by_name = {s.name: s for s in c.slices}
    overall_auc = c.overall.candidate.get('auc') if c.overall else None
    return {
        'limitations': [[l.finding, l.detail] for l in c.limitations],
        'too_few': [[n, count_text(by_name[n].examples), _auc(by_name[n].candidate)] for n in c.too_few],
        'one_class': [[n, by_name[n].examples, metric_text(by_name[n].candidate.get('binary_accuracy'))]
                      for n in c.one_class],
        'weak': [[n, by_name[n].examples, metric_text(by_name[n].candidate['auc']), metric_text(overall_auc),
                  f'{overall_auc - by_name[n].candidate["auc"]:.4f}'] for n in c.weak]}
