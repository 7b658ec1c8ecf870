"""`models` and `canary`: the registry, its transitions, and the canary's verdict.

    taxi-pipeline models list | show VERSION | history [--at TIME]
    taxi-pipeline models approve VERSION --reason ... [--drift-reviewed]
    taxi-pipeline models reject VERSION --reason ...
    taxi-pipeline models promote VERSION --to canary|stable [--percent N] --reason ...
    taxi-pipeline models rollback [--canary] --reason ...
    taxi-pipeline canary status | evaluate [--auto]

Handlers raise ValueError (and policy.NotAllowed) for refused input (exit 2,
nothing changed); a history that does not verify is exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Optional

from foundation.workspace import Workspace
from release import canary as canary_lib, ledger, policy as policy_lib, registry as registry_lib, transitions
from release.registry import CANARY, STABLE


def register(commands: argparse._SubParsersAction, workspace: Workspace) -> None:
    default_model_base_path = workspace.absolute().model_base_path
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--model-base-path', default=default_model_base_path,
                        help="the Pusher's push destination: one numeric directory per version (default: %(default)s)")
    store = common.add_mutually_exclusive_group()
    store.add_argument('--metadata-path', default=workspace.metadata_path,
                       help='the ML Metadata SQLite store of local runs (default: %(default)s)')
    store.add_argument('--metadata-grpc', metavar='HOST:PORT',
                       help="a cluster's ML Metadata service instead, e.g. metadata-grpc-service.kubeflow:8080")
    common.add_argument('--serving-config', default=workspace.serving_config,
                        help="TF Serving's model config whose version labels the transitions move; created on the "
                        'first release (default: %(default)s; in the cluster serving/config/models.config)')
    common.add_argument('--traffic-config', help='the canary traffic split file (default: traffic.json beside '
                        '--serving-config)')
    common.add_argument('--model-name', help="the model's name in the serving config (default: the base path's "
                        'last directory)')
    common.add_argument('--user', help=f'who is acting (default: ${policy_lib.USER_VARIABLE}, else the login name)')
    common.add_argument('--signing-key', metavar='PATH',
                        help='your SSH key, which signs the decision (default: $TAXI_PIPELINE_SIGNING_KEY); a .pub '
                        'file signs with its private half in ssh-agent. release/approvers.yaml lists whose key is '
                        'whose')
    common.add_argument('--server', action='append', default=[], metavar='URL',
                        help='REST address of a server to wait for when a label must move to a version it has not '
                        'loaded yet (repeat for each replica), e.g. http://127.0.0.1:8501')
    common.add_argument('--wait-seconds', type=float, default=300.0, help='how long to wait for --server')
    common.add_argument('--json', action='store_true', help='machine-readable output')

    models = commands.add_parser('models', help='the model registry: versions, stages, approvals, history')
    verbs = models.add_subparsers(dest='verb', required=True)
    listing = verbs.add_parser('list', parents=[common],
                               help='every version: stage, blessing, drift, metrics, approval')
    show = verbs.add_parser('show', parents=[common], help='one version in full, with every decision about it')
    show.add_argument('version', type=int)
    history = verbs.add_parser('history', parents=[common],
                               help='every decision in order, verified; --at TIME: what served then')
    history.add_argument('--at', help='ISO 8601 time (UTC unless it says): which versions served then')
    for parser in (listing, history):
        parser.add_argument('--html', metavar='FILE', help='also write the registry as a page: a timeline of what '
                            'served when, the versions, every decision (e.g. workspace/reports/registry.html)')
    for verb, text in (('approve', 'approve a version for production (approve role)'),
                       ('reject', 'reject a version (approve role); a rejected canary stops taking traffic')):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument('version', type=int)
        parser.add_argument('--reason', required=True)
        if verb == 'approve':
            parser.add_argument('--drift-reviewed', action='store_true',
                                help='the version was trained on drifted data and you reviewed the drift report')
    promote = verbs.add_parser('promote', parents=[common], help='put a version in canary or stable (promote role)')
    promote.add_argument('version', type=int)
    promote.add_argument('--to', required=True, choices=(CANARY, STABLE))
    promote.add_argument('--percent', type=float, help='canary share of unaddressed traffic (default 10)')
    promote.add_argument('--reason', required=True)
    rollback = verbs.add_parser('rollback', parents=[common],
                                help='restore the previous stable version (and withdraw any canary); with --canary '
                                'withdraw only the canary (promote role)')
    rollback.add_argument('--canary', action='store_true', help='withdraw the canary, keep the stable version')
    rollback.add_argument('--reason', required=True)
    sync = verbs.add_parser('sync', parents=[common], help='put the recorded labels and traffic share back in a '
                            'serving config changed outside the registry (promote role)')
    sync.add_argument('--reason', required=True)
    models.set_defaults(handler=models_command)

    canary = commands.add_parser('canary', help="the canary against the stable version on live traffic")
    canary_verbs = canary.add_subparsers(dest='verb', required=True)
    for verb, text in (('status', 'which versions split the traffic, since when, and their latest monitored metrics'),
                       ('evaluate', "compare the two versions' live metrics from feedback and recommend promote, "
                                    'rollback or wait; --auto acts on it')):
        parser = canary_verbs.add_parser(verb, parents=[common], help=text)
        if verb == 'evaluate':
            parser.add_argument('--request-log-dir', default=workspace.request_log_dir)
            parser.add_argument('--feedback-dir', default=workspace.feedback_dir)
            defaults = canary_lib.Settings()
            parser.add_argument('--min-labelled', type=int, default=defaults.min_labelled,
                                help='labelled examples each version needs before anything is decided '
                                '(default: %(default)s)')
            parser.add_argument('--alpha', type=float, default=defaults.alpha,
                                help='one-sided significance level (default: %(default)s)')
            parser.add_argument('--margin', type=float, default=defaults.margin,
                                help='how much worse (AUC, accuracy) the canary may be and be promoted '
                                '(default: %(default)s)')
            parser.add_argument('--auto', action='store_true',
                                help='act on the recommendation as --user: withdraw a worse canary; promote a good '
                                'one if someone else approved it')
    canary.set_defaults(handler=canary_command)


# -- plumbing ---------------------------------------------------------------------------------------

def _base_path(args) -> str:
    path = args.model_base_path
    return path.rstrip('/') if '://' in path else os.path.abspath(path)


def _store(args):
    from foundation import metadata_store
    store = metadata_store.connect_existing(args.metadata_path, args.metadata_grpc, mode=metadata_store.WRITE)
    return store, None if args.metadata_grpc else os.path.abspath(args.metadata_path)


def _release_target(args, base: str) -> 'transitions.ServingTarget':
    config = os.path.abspath(args.serving_config)
    return transitions.ServingTarget(
        config_path=config,
        traffic_path=os.path.abspath(args.traffic_config) if args.traffic_config else
        os.path.join(os.path.dirname(config), _traffic_file()),
        model_name=args.model_name or os.path.basename(base), servers=tuple(args.server),
        wait_seconds=args.wait_seconds)


def _release(args, emit_line=print):
    base = _base_path(args)
    store, metadata_path = _store(args)
    target = _release_target(args, base)
    # Always the repository's file: a policy chosen on the command line would be no policy.
    return transitions.Release(store, base, target, policy_lib.load(),
                               policy_lib.current_user(args.user), metadata_path, emit_line, args.signing_key)


def _traffic_file() -> str:
    from serving import traffic
    return traffic.TRAFFIC_FILE


_when = ledger.format_time


def _parse_time(text: str) -> int:
    try:
        return ledger.parse_time(text)
    except ValueError:
        raise ValueError(f'--at takes an ISO 8601 time like 2026-11-30T12:00:00, not {text!r}') from None


_decisions_shown = registry_lib.with_outcomes


def _decision_dict(d: ledger.Decision, confirmation: Optional[ledger.Decision] = None) -> dict:
    shown = {'sequence': d.sequence, 'at': _when(d.at_micros) + ' UTC', 'at_micros': d.at_micros, 'action': d.action,
             'version': d.model_version, 'actor': d.actor, 'ran_as': d.ran_as, 'reason': d.reason,
             'changes': {str(v): list(c) for v, c in d.changes.items()}, 'labels': d.labels,
             'canary_percent': d.canary_percent, 'evidence': d.evidence, 'policy_sha256': d.policy_sha256,
             'digest': d.digest, 'phase': d.phase, 'signed': bool(d.signature)}
    if d.intent:
        shown['confirmation'] = None if confirmation is None else {
            'sequence': confirmation.sequence, 'at': _when(confirmation.at_micros) + ' UTC',
            'outcome': confirmation.evidence.get('outcome'), 'actor': confirmation.actor,
            'labels': confirmation.labels, 'canary_percent': confirmation.canary_percent,
            'reason': confirmation.reason}
    return shown


def _decision_line(d: ledger.Decision, confirmation: Optional[ledger.Decision] = None) -> str:
    changes = ', '.join(f'{v}: {a} -> {b}' for v, (a, b) in sorted(d.changes.items())) or 'no stage change'
    percent = f'; canary {d.canary_percent:g}%' if d.labels.get('canary') else ''
    line = (f'  #{d.sequence:<3} {_when(d.at_micros)}  {d.action:<8} {d.model_version:<11} by {d.actor} '
            f'({d.ran_as}): {changes}{percent}\n        why: {d.reason}')
    if d.intent:
        line += ('\n        NOT CONFIRMED: it was being applied, and may or may not serve' if confirmation is None
                 else f'\n        {confirmation.evidence.get("outcome")}: #{confirmation.sequence} '
                      f'{_when(confirmation.at_micros)} by {confirmation.actor}'
                      + (f' ({confirmation.evidence.get("error")})' if confirmation.evidence.get('error') else '')
                      + (f' ({confirmation.reason})' if confirmation.reason.startswith('repair') else ''))
    return line


# -- models -----------------------------------------------------------------------------------------

def models_command(args) -> int:
    if args.verb in ('list', 'show', 'history'):
        return _read_only(args)
    if args.wait_seconds <= 0:
        raise ValueError('--wait-seconds must be above 0')
    release = _release(args)
    if args.verb == 'sync':
        release.sync(args.reason)
        return 0
    if args.verb == 'approve':
        result = release.approve(args.version, args.reason, args.drift_reviewed)
    elif args.verb == 'reject':
        result = release.reject(args.version, args.reason)
    elif args.verb == 'promote':
        result = release.promote(args.version, args.to, args.reason, args.percent)
    else:
        result = release.rollback(args.reason, canary_only=args.canary)
    return _report_transition(result, release, args)


def _report_transition(result, release, args) -> int:
    from release.transitions import Pending
    if isinstance(result, Pending):
        if args.json:
            print(json.dumps({'pending': result.versions}))
        return 0
    if args.json:
        print(json.dumps(_decision_dict(result, release.confirmation), sort_keys=True))
        return 0
    print(f'recorded decision #{result.sequence} in ML Metadata (execution {result.execution_id}), signed by '
          f'{result.actor}:')
    print(_decision_line(result, release.confirmation))
    labels = ', '.join(f'{k}={v}' for k, v in sorted(result.labels.items())) or 'none'
    print(f'serving labels: {labels}' + (f'; canary takes {result.canary_percent:g}% of unaddressed traffic'
                                         if result.labels.get('canary') else ''))
    print(f'  {release.target.config_path}')
    return 0


def _read_only(args) -> int:
    store, _ = _store(args)
    registry = registry_lib.Registry(store, _base_path(args))
    decisions = registry.decisions()
    problems = ledger.problems(decisions, policy_lib.load())
    drift = transitions.config_drift(_release_target(args, registry.model_base_path), decisions)
    if drift:  # the config is the history's second witness: a difference is for someone to look at
        problems.append(f'serving config: {drift}')
    state = registry_lib.replay(decisions)
    if args.verb == 'list':
        problems += _sweep(store, registry, state)
    problems += transitions.served_files_problems(registry, state)
    rows = None
    if getattr(args, 'html', None):
        from foundation.atomic_file import write_atomically
        from release import report
        rows = [_row(v, state) for v in registry.versions()]
        write_atomically(args.html, report.page(registry.model_base_path, decisions, rows, problems,
                                                path=os.path.abspath(args.html)))
        print(f'registry page: {args.html}', file=sys.stderr)
    if args.verb == 'history':
        return _history(args, decisions, problems)
    if args.verb == 'show':
        return _show(args, registry, state, decisions, problems)
    versions = registry.versions()
    rows = rows if rows is not None else [_row(v, state) for v in versions]
    if args.json:
        print(json.dumps({'model_base_path': registry.model_base_path, 'history_verified': not problems,
                          'versions': rows}, sort_keys=True))
        return 1 if problems else 0
    print(f'{registry.model_base_path}: {len(versions)} version(s), {len(decisions)} decision(s), history '
          + ('verified' if not problems else 'DOES NOT VERIFY (below)'))
    print(f'  {"VERSION":<11} {"STAGE":<10} {"BLESSED":<8} {"DRIFT":<12} {"EVAL AUC":<9} {"LIVE AUC (n)":<15} '
          f'{"PUSHED (UTC)":<20} APPROVAL')
    for row in rows:
        live = (f'{row["live_auc"]:.4f} ({row["live_labelled"]})' if row['live_auc'] is not None else '-')
        evaluation = f'{row["eval_auc"]:.4f}' if row['eval_auc'] is not None else '-'
        stage = row['stage'] + (f' {row["canary_percent"]:g}%' if row['stage'] == CANARY else '')
        print(f'  {row["version"]:<11} {stage:<10} {row["blessed"]:<8} {row["drift"] or "-":<12} {evaluation:<9} '
              f'{live:<15} {row["pushed"]:<20} {row["approval"] or "-"}')
    if problems:
        _print_problems(problems)
        return 1
    return 0


def _sweep(store, registry, state) -> list:
    """Quarantines what killed pushes left in the push destination (components/pusher: the same sweep the
    Pusher runs), naming each on stderr. A version a serving label names is not moved (serving would lose it):
    it is a problem to look at. Returns the problems."""
    from components.pusher import push_destination
    from foundation import metadata_store
    base = registry.model_base_path
    if not registry_lib._isdir(base):
        return []
    problems = []
    served = set(state.labels.values())
    for leftover in push_destination.leftovers(base, metadata_store.pushed_versions(store, base),
                                               grace_seconds=push_destination.GRACE_SECONDS):
        if leftover.name.isdigit() and int(leftover.name) in served:
            problems.append(f'{leftover.reason}, and a serving label names it')
            continue
        try:
            moved_to = push_destination.quarantine(base, leftover)
        except OSError as e:
            problems.append(f'{leftover.reason}; it could not be quarantined ({e})')
            continue
        print(push_destination.describe(leftover, moved_to), file=sys.stderr)
    return problems


def _print_problems(problems) -> None:
    print('NOT VERIFIED (the history, or the serving config against it):\n  ' + '\n  '.join(problems),
          file=sys.stderr)


_PAST = {ledger.APPROVE: 'approved', ledger.REJECT: 'rejected'}


def _row(version: registry_lib.Version, state: registry_lib.State) -> dict:
    evaluation = registry_lib.evaluation_metrics(version)
    verdict = state.verdicts.get(version.version)
    approval = (f'{_PAST[verdict.action]} by {verdict.actor} (#{verdict.sequence})' if verdict is not None else None)
    stage = state.stage(version.version)
    if not version.registered:
        stage = 'unregistered'
    elif version.version == state.rollback_target:
        stage = f'{stage}/rollback'
    return {'version': version.version, 'stage': stage,
            'canary_percent': state.canary_percent if state.canary == version.version else 0.0,
            'blessed': {True: 'yes', False: 'no', None: 'unknown'}[version.blessed],
            'drift': version.drift_verdict, 'drift_features': version.drift_features,
            'eval_auc': evaluation.get('candidate', {}).get('auc'),
            'eval_accuracy': evaluation.get('candidate', {}).get('binary_accuracy'),
            'live_auc': (version.live or {}).get('live_auc') if (version.live or {}).get('labelled_examples') else None,
            'live_accuracy': (version.live or {}).get('live_accuracy') if version.live else None,
            'live_labelled': (version.live or {}).get('labelled_examples', 0),
            'pushed': _when(version.push_time_ms * 1000) if version.push_time_ms else '-', 'run': version.run,
            'approval': approval, 'on_disk': version.on_disk}


def _show(args, registry, state, decisions, problems) -> int:
    version = registry.version(args.version)
    if not version.on_disk and not version.registered:
        raise ValueError(f'no version {args.version} under {registry.model_base_path} or in ML Metadata')
    row = _row(version, state)
    evaluation = registry_lib.evaluation_metrics(version)
    about = [(d, c) for d, c in _decisions_shown(decisions)
             if d.model_version == args.version or args.version in d.changes]
    if args.json:
        print(json.dumps({**row, 'evaluation': evaluation, 'live': version.live, 'directory': version.directory,
                          'model_uri': version.model_uri, 'decisions': [_decision_dict(*pair) for pair in about],
                          'history_verified': not problems}, sort_keys=True, default=str))
        return 1 if problems else 0
    print(f'version {args.version} of {registry.model_base_path}')
    print(f'  stage:        {row["stage"]}' + (f' ({row["canary_percent"]:g}% of traffic)'
                                               if state.canary == args.version else ''))
    since = state.since.get(args.version)
    if since is not None:
        print(f'  since:        {_when(since.at_micros)} UTC (decision #{since.sequence} by {since.actor})')
    print('  registered:   ' + ('yes: PushedModel %d, run %s' % (version.pushed.id, version.run)
                                 if version.registered else 'NO: ML Metadata has no record of the pipeline pushing it'))
    print(f'  pushed:       {row["pushed"]} UTC to {version.directory}' + ('' if version.on_disk else ' (MISSING)'))
    print(f'  blessed:      {row["blessed"]}')
    drift = version.drift_verdict or '-'
    if version.drift_features:
        drift += f' in {", ".join(version.drift_features)}: an approval needs --drift-reviewed'
    print(f'  drift:        {drift}')
    for side in ('candidate', 'baseline'):
        metrics = evaluation.get(side) or {}
        if metrics:
            shown = ', '.join(f'{k} {metrics[k]:.4f}' for k in ('auc', 'binary_accuracy', 'example_count')
                              if k in metrics)
            print(f'  eval {side + ":":<11}{shown}')
    live = version.live
    if live:
        print(f'  live:         window ending {_when(live["window_end_micros"])} UTC: {live["examples"]} examples, '
              f'{live["labelled_examples"]} labelled, AUC {live.get("live_auc", 0):.4f}, accuracy '
              f'{live.get("live_accuracy", 0):.4f}, {live["alerts"]} alert(s)')
    else:
        print('  live:         no monitoring pass recorded')
    print(f'  approval:     {row["approval"] or "none"}')
    print(f'  decisions ({len(about)}):')
    for pair in about:
        print(_decision_line(*pair))
    if problems:
        _print_problems(problems)
        return 1
    return 0


def _history(args, decisions, problems) -> int:
    if args.at:
        at = _parse_time(args.at)
        state = registry_lib.replay(decisions, until_micros=at)
        answer = {'at': _when(at) + ' UTC', 'stable': state.stable, 'canary': state.canary,
                  'canary_percent': state.canary_percent,
                  'taking_effect': [d.sequence for d in state.unconfirmed],
                  'stable_since': _decision_dict(state.since[state.stable]) if state.stable is not None else None,
                  'history_verified': not problems}
        if args.json:
            print(json.dumps(answer, sort_keys=True))
        elif state.stable is None:
            print(f'at {answer["at"]}: no version served production (nothing was released yet)')
        else:
            since = state.since[state.stable]
            print(f'at {answer["at"]}: version {state.stable} served production, since {_when(since.at_micros)} UTC '
                  f'(decision #{since.sequence}, {since.action} by {since.actor}: {since.reason})')
            if state.canary is not None:
                print(f'  canary: version {state.canary} with {state.canary_percent:g}% of unaddressed traffic')
        for intent in ([] if args.json else state.unconfirmed):  # between intent and confirmation traffic moved
            confirmed = next((d for d in decisions if d.action == ledger.CONFIRM
                              and d.evidence.get('intent') == intent.sequence), None)
            print(f'  but decision #{intent.sequence} ({intent.action} {intent.model_version} by {intent.actor}, '
                  f'recorded {_when(intent.at_micros)} UTC) was taking effect then: '
                  + (f'confirmed {confirmed.evidence.get("outcome")} at {_when(confirmed.at_micros)} UTC'
                     if confirmed else 'never confirmed') + '; traffic may have moved to it in between')
    elif args.json:
        print(json.dumps({'decisions': [_decision_dict(*pair) for pair in _decisions_shown(decisions)],
                          'records': len(decisions), 'history_verified': not problems}, sort_keys=True))
    else:
        shown = _decisions_shown(decisions)
        print(f'{len(shown)} decision(s) in {len(decisions)} signed record(s), oldest first:')
        for pair in shown:
            print(_decision_line(*pair))
    if problems:
        _print_problems(problems)
        return 1
    if not args.json:
        print(f'history verified: {len(decisions)} record(s), each chained to the one before and signed by its '
              'actor\'s listed key')
    return 0


# -- canary -----------------------------------------------------------------------------------------

def canary_command(args) -> int:
    if args.verb == 'evaluate':
        canary_lib.Settings(args.min_labelled, args.alpha, args.margin)  # bad values are refused before anything
    store, _ = _store(args)
    registry = registry_lib.Registry(store, _base_path(args))
    decisions = registry.decisions()
    ledger.verify(decisions, policy_lib.load())
    # What serves is what the files say: a status or an evaluation over a history they contradict would mislead.
    drift = transitions.config_drift(_release_target(args, registry.model_base_path), decisions)
    if drift:
        raise transitions.ConfigDrift(f'serving config: {drift}')
    state = registry_lib.replay(decisions)
    if state.canary is None:
        message = (f'no canary: version {state.stable} serves all traffic' if state.stable is not None
                   else 'no canary: nothing released yet')
        print(json.dumps({'canary': None, 'stable': state.stable}) if args.json else message)
        return 0
    since = state.since[state.canary]
    if args.verb == 'status':
        return _canary_status(args, registry, state, since)
    comparison = _evaluate(args, registry, state, since)
    lines = [f'canary {state.canary} ({state.canary_percent:g}%) vs stable {state.stable}, on feedback received '
             f'since {_when(since.at_micros)} UTC:']
    for name, version, live in (('stable', state.stable, comparison.stable_live),
                                ('canary', state.canary, comparison.canary_live)):
        if live is None:
            lines.append(f'  {name} {version}: no labelled examples')
        else:
            auc = f'AUC {live.auc:.4f} (se {live.auc_se:.4f})' if live.auc_se is not None else 'AUC n/a'
            lines.append(f'  {name} {version}: {live.examples} labelled ({live.positives} positive), {auc}, '
                         f'accuracy {live.accuracy:.4f}')
    lines.append(f'recommendation: {comparison.recommendation.upper()}')
    lines += [f'  {reason}' for reason in comparison.reasons]
    acted = None
    if args.auto and comparison.recommendation != canary_lib.WAIT:
        acted = _act(args, comparison, lines)
    if args.json:
        print(json.dumps({**comparison.evidence()['canary_test'], 'acted': acted}, sort_keys=True, default=str))
    else:
        print('\n'.join(lines))
    # A worse canary that could not be withdrawn is still taking traffic: someone must know.
    return 1 if acted and not acted['done'] and comparison.recommendation == canary_lib.ROLLBACK else 0


def _canary_status(args, registry, state, since) -> int:
    versions = {name: registry.version(v) for name, v in (('stable', state.stable), ('canary', state.canary))}
    status = {'stable': state.stable, 'canary': state.canary, 'canary_percent': state.canary_percent,
              'canary_since': _when(since.at_micros) + ' UTC', 'promoted_by': since.actor,
              'approved': state.approved(state.canary) is not None,
              'latest_monitoring': {name: v.live for name, v in versions.items()}}
    if args.json:
        print(json.dumps(status, sort_keys=True, default=str))
        return 0
    print(f'canary {state.canary} takes {state.canary_percent:g}% of unaddressed traffic since '
          f'{status["canary_since"]} '
          f'(decision #{since.sequence} by {since.actor}); stable {state.stable} the rest')
    print(f'  approval for stable: {"yes" if status["approved"] else "none yet"}')
    for name, version in versions.items():
        live = version.live
        text = (f'{live["examples"]} examples, {live["labelled_examples"]} labelled, AUC {live.get("live_auc", 0):.4f} '
                f'(window ending {_when(live["window_end_micros"])} UTC)' if live else 'no monitoring pass yet')
        print(f'  {name} {version.version}: {text}')
    print('  `taxi-pipeline canary evaluate` tests the difference on all feedback since the canary started')
    return 0


def _evaluate(args, registry, state, since) -> canary_lib.Comparison:
    test_settings = canary_lib.Settings(args.min_labelled, args.alpha, args.margin)  # bad values fail before reading
    from monitoring import monitor
    from taxi_model import contract
    now = ledger.now_micros()
    settings = monitor.Settings(
        log_dir=args.request_log_dir, model_base_path=registry.model_base_path, end_micros=now,
        window_micros=max(now - since.at_micros, 1), prediction_key=contract.PROBABILITIES,
        outlier_key=contract.IS_OUTLIER, feedback_dir=args.feedback_dir, labeler=contract.labels_from_feedback,
        label_features=contract.FEEDBACK_FEATURES, min_labelled=args.min_labelled,
        # Only what each version answered since the canary started: the same time, the same traffic.
        served_since_micros=since.at_micros)
    found = monitor.monitor(settings)
    live = {report.version: report.live for report in found.reports}
    return canary_lib.compare(state.stable, state.canary, live.get(state.stable), live.get(state.canary),
                              test_settings)


def _act(args, comparison: canary_lib.Comparison, lines) -> Optional[dict]:
    from release.policy import NotAllowed
    release = _release(args, emit_line=lines.append)
    reason = f'canary evaluation: {comparison.recommendation}: ' + '; '.join(comparison.reasons)
    try:
        if comparison.recommendation == canary_lib.ROLLBACK:
            decision = release.rollback(reason, canary_only=True, evidence=comparison.evidence(),
                                        expect_canary=comparison.canary)
        else:
            decision = release.promote(comparison.canary, STABLE, reason, evidence=comparison.evidence(),
                                       expect_canary=comparison.canary)
    except NotAllowed as e:
        lines.append(f'not done: {e}')
        return {'done': False, 'why': str(e)}
    if dataclasses.is_dataclass(decision) and isinstance(decision, ledger.Decision):
        lines.append(f'done: decision #{decision.sequence} ({decision.action}) recorded')
        return {'done': True, 'decision': decision.sequence}
    return {'done': False, 'why': 'staged: waiting for the servers to load the version'}
