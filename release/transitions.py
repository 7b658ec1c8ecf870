"""Release transitions: the rules, the serving config they write, the decision they record.

Each transition (approve, reject, promote to canary or stable, roll back,
withdraw a canary) runs under the ledger's append lock and in this order:
read and verify the recorded history; check the user's role and the rules;
write TF Serving's model config (version labels, `serving.labels`) and the
canary's traffic share (`serving.traffic`); record the decision in ML
Metadata. A refused transition changes nothing (exit 2). If recording
fails, or a server named with `--server` does not confirm the change, the
serving files are put back as they were, so nothing serves that the
history does not show.

The labels: `stable` serves production, `canary` takes its share of the
unaddressed traffic, and `rollback` keeps the previous stable version
loaded, so rolling back is one label move between loaded versions, with no
load on the request path. TF Serving moves a label only to a version it has
loaded, so when a label must move to a version not loaded yet, the config
first only adds it to the version policy; with `--server` the command waits
until every listed server reports it AVAILABLE and then moves the label,
without one it says so and records nothing until it is run again. With
`--server`, the command also returns only once every server answers each
label with its new version: "rolled back" means the traffic moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, List, Optional, Sequence

from release import ledger, policy as policy_lib, registry as registry_lib
from release.policy import NotAllowed
from release.registry import ARCHIVED, CANARY, STABLE
from serving import labels as labels_lib, traffic as traffic_lib


@dataclasses.dataclass(frozen=True)
class ServingTarget:
    """Where decisions take effect: TF Serving's model config and the traffic file beside it."""

    config_path: str
    traffic_path: str
    model_name: str
    # REST addresses of servers to wait for when a label must move to a version they have not loaded.
    servers: Sequence[str] = ()
    wait_seconds: float = 300.0


# Above this share a canary is production in all but name: it needs the approval stable needs.
MAX_UNAPPROVED_PERCENT = 50.0


def _expect(state, canary: Optional[int]) -> None:
    if canary is not None and state.canary != canary:
        raise NotAllowed(f'version {canary} is no longer the canary (now: {state.canary}): the evaluation is stale, '
                         'nothing was done')


@dataclasses.dataclass(frozen=True)
class Pending:
    """The config now also loads `versions`; the labels move when the command is run again after they load."""

    versions: List[int]


class ConfigDrift(RuntimeError):
    """The serving config does not say what the recorded history says (exit 1)."""


def config_drift(target: ServingTarget, decisions) -> Optional[str]:
    """How the config's labels differ from the latest decision's, or None (also before any decision)."""
    if not decisions:
        return None
    recorded = decisions[-1].labels
    if not os.path.exists(target.config_path):
        return (f'{target.config_path} does not exist, but the history (decision #{decisions[-1].sequence}) says '
                f'labels {", ".join(f"{k}={v}" for k, v in sorted(recorded.items()))}') if recorded else None
    found = labels_lib.read_labels(target.config_path, target.model_name)
    if found == recorded:
        return None
    show = lambda labels: ', '.join(f'{k}={v}' for k, v in sorted(labels.items())) or 'none'  # noqa: E731
    return (f'{target.config_path} labels {show(found)}, but the history (decision #{decisions[-1].sequence}) '
            f'says {show(recorded)}')


def _recorded_after_all(store, decision, error: BaseException):
    """`decision` if a write that raised `error` recorded it after all; else raises `error`."""
    try:
        found = ledger.landed(store, decision)
    except Exception:
        found = None
    if found is None:
        raise error
    return found


def _read_or_none(path: str) -> Optional[bytes]:
    try:
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return None


def _restore(path: str, content: Optional[bytes]) -> None:
    from foundation.atomic_file import write_atomically
    if content is None:
        if os.path.exists(path):
            os.remove(path)
    else:
        write_atomically(path, content)


class Release:
    """Transitions of one model's versions, by one user, under one policy."""

    def __init__(self, store, model_base_path: str, target: ServingTarget, policy: policy_lib.Policy, user: str,
                 metadata_path: Optional[str] = None, emit_line: Callable[[str], None] = print):
        self.store = store
        self.registry = registry_lib.Registry(store, model_base_path)
        self.target = target
        self.policy = policy
        self.user = user
        self.metadata_path = metadata_path
        self.emit_line = emit_line

    # -- the transitions ---------------------------------------------------------------------------

    def approve(self, version: int, reason: str, drift_reviewed: bool = False):
        def decide(state, decisions):
            self.policy.require(self.user, policy_lib.APPROVE, f'approve version {version}')
            found = self._releasable(version, 'approved')
            if found.needs_drift_review and not drift_reviewed:
                why = (f'was trained on data that drifted from its predecessor\'s '
                       f'({", ".join(found.drift_features) or "see its drift report"})' if found.drift_verdict else
                       'has no drift verdict in ML Metadata (its run had no drift check), so nobody compared its '
                       'training data with what served before')
                raise NotAllowed(f'version {version} {why}: review its data, then approve with --drift-reviewed')
            evidence = {'blessed': True, 'drift_verdict': found.drift_verdict, 'drift_reviewed': bool(drift_reviewed),
                        'run': found.run, 'content_sha256': registry_lib.content_digest(found.directory)}
            return dict(action=ledger.APPROVE, changes={}, stable_line=state.stable_line, canary=state.canary,
                        percent=state.canary_percent, evidence=evidence)
        return self._transition(version, reason, decide)

    def reject(self, version: int, reason: str):
        def decide(state, decisions):
            self.policy.require(self.user, policy_lib.APPROVE, f'reject version {version}')
            if state.stable == version:
                raise NotAllowed(f'version {version} serves production: roll it back first '
                                 '(taxi-pipeline models rollback), then reject it')
            changes, canary, percent = {}, state.canary, state.canary_percent
            if state.canary == version:  # a rejected canary stops taking traffic at once
                changes, canary, percent = {version: (CANARY, ARCHIVED)}, None, 0.0
            return dict(action=ledger.REJECT, changes=changes, stable_line=state.stable_line, canary=canary,
                        percent=percent, evidence={})
        return self._transition(version, reason, decide)

    def promote(self, version: int, to: str, reason: str, percent: Optional[float] = None, evidence=None,
                expect_canary: Optional[int] = None):
        """`expect_canary`: refuse unless this version is the canary (an evaluation acting on what it judged)."""
        def decide(state, decisions):
            self.policy.require(self.user, policy_lib.PROMOTE, f'promote version {version} to {to}')
            _expect(state, expect_canary)
            self._releasable(version, f'promoted to {to}')
            verdict = state.verdicts.get(version)
            if verdict is not None and verdict.action == ledger.REJECT:
                raise NotAllowed(f'version {version} was rejected by {verdict.actor} '
                                 f'({ledger.format_time(verdict.at_micros)} UTC: {verdict.reason}); it needs a new approval')
            if to == CANARY:
                return self._to_canary(state, version, percent, evidence)
            if to == STABLE:
                return self._to_stable(state, version, evidence)
            raise ValueError(f'promote --to takes {CANARY} or {STABLE}, not {to!r}')
        return self._transition(version, reason, decide)

    def rollback(self, reason: str, canary_only: bool = False, evidence=None, expect_canary: Optional[int] = None):
        """Restores the previous stable version (and withdraws any canary); with `canary_only`, withdraws the
        canary."""
        def decide(state, decisions):
            doing = 'withdraw the canary' if canary_only else 'roll back'
            self.policy.require(self.user, policy_lib.PROMOTE, doing)
            _expect(state, expect_canary)
            if canary_only:
                if state.canary is None:
                    raise NotAllowed('there is no canary to withdraw')
                return dict(action=ledger.WITHDRAW, version=state.canary, changes={state.canary: (CANARY, ARCHIVED)},
                            stable_line=state.stable_line, canary=None, percent=0.0, evidence=evidence or {})
            target = state.rollback_target
            if target is None:
                raise NotAllowed('nothing to roll back to: no version served production before '
                                 f'{state.stable if state.stable is not None else "(no stable version yet)"}')
            changes = {state.stable: (STABLE, ARCHIVED), target: (state.stage(target), STABLE)}
            if state.canary is not None:
                changes[state.canary] = (CANARY, ARCHIVED)
            # No `rollback` label after a rollback: the version before the restored one is likely not loaded, and
            # waiting for it to load must not delay the restore. A second rollback loads it first (see --server).
            return dict(action=ledger.ROLLBACK, version=target, changes=changes, stable_line=state.stable_line[:-1],
                        canary=None, percent=0.0, evidence={**(evidence or {}), 'rolled_back': state.stable},
                        rollback_label=False)
        return self._transition(None, reason, decide)

    # -- the rules -----------------------------------------------------------------------------------

    def _releasable(self, version: int, doing: str) -> registry_lib.Version:
        found = self.registry.version(version)
        if not found.registered:
            raise NotAllowed(f'version {version} cannot be {doing}: ML Metadata has no record of the pipeline pushing '
                             f'it to {self.registry.model_base_path}, so its evaluation and blessing are unknown')
        if not found.blessed:
            raise NotAllowed(f'version {version} cannot be {doing}: the Evaluator did not bless it')
        if not found.on_disk:
            raise NotAllowed(f'version {version} cannot be {doing}: {found.directory} has no saved_model.pb')
        return found

    def _to_canary(self, state, version: int, percent: Optional[float], evidence):
        percent = 10.0 if percent is None else float(percent)
        if not 0 < percent <= 100:
            raise ValueError(f'--percent must be above 0 and at most 100, not {percent:g}')
        if state.stable is None:
            raise NotAllowed('no version serves production yet: a canary is measured against the stable version, '
                             'so promote a first version to stable')
        if state.stable == version:
            raise NotAllowed(f'version {version} is the stable version already')
        if state.canary not in (None, version):
            raise NotAllowed(f'version {state.canary} is the canary: withdraw it first '
                             '(taxi-pipeline models rollback --canary) or promote it')
        if version in state.stable_line:
            raise NotAllowed(f'version {version} served production before: to serve it again, roll back '
                             '(taxi-pipeline models rollback)')
        if percent > MAX_UNAPPROVED_PERCENT and state.approved(version) is None:
            raise NotAllowed(f'a canary takes at most {MAX_UNAPPROVED_PERCENT:g}% of the traffic before someone '
                             f'approves it for production; version {version} has no approval')
        changes = {} if state.canary == version else {version: (state.stage(version), CANARY)}
        return dict(action=ledger.PROMOTE, changes=changes, stable_line=state.stable_line, canary=version,
                    percent=percent, evidence=evidence or {})

    def _to_stable(self, state, version: int, evidence):
        if state.stable == version:
            raise NotAllowed(f'version {version} is the stable version already')
        approval = state.approved(version)
        if approval is None:
            raise NotAllowed(f'version {version} has no approval: someone with the approve role '
                             f'({", ".join(sorted(self.policy.members.get(policy_lib.APPROVE, ()))) or "nobody"}) '
                             f'must run `taxi-pipeline models approve {version} --reason ...` first')
        if approval.actor not in self.policy.members.get(policy_lib.APPROVE, ()):
            raise NotAllowed(f'version {version} was approved by {approval.actor}, who no longer has the approve role '
                             f'in {self.policy.path}: it needs a new approval')
        if approval.actor == self.user:
            raise NotAllowed(f'{self.user} approved version {version}, so someone else must promote it to stable '
                             '(separation of duties)')
        approved = approval.evidence.get('content_sha256')
        current = registry_lib.content_digest(self.registry.version(version).directory)
        if approved != current:
            raise NotAllowed(f'the files of version {version} changed since {approval.actor} approved them '
                             f'(decision #{approval.sequence}): what was approved is not what would serve; it needs '
                             'a new approval')
        changes = {version: (state.stage(version), STABLE)}
        if state.stable is not None:
            changes[state.stable] = (STABLE, ARCHIVED)
        if state.canary not in (None, version):
            changes[state.canary] = (CANARY, ARCHIVED)
        return dict(action=ledger.PROMOTE, changes=changes, stable_line=state.stable_line + [version], canary=None,
                    percent=0.0, evidence={**(evidence or {}), 'approval': approval.sequence,
                                           'approved_by': approval.actor, 'content_sha256': current})

    # -- taking effect and recording -----------------------------------------------------------------

    def _transition(self, version: Optional[int], reason: str, decide):
        if not reason or not reason.strip():
            raise ValueError('every decision needs a reason (--reason): the audit history says why')
        with ledger.append_lock(self.metadata_path):
            decisions = self.registry.decisions()
            ledger.verify(decisions)
            self.check_config(decisions)
            state = registry_lib.replay(decisions)
            plan = decide(state, decisions)
            version = plan.get('version', version)
            line = plan['stable_line']
            labels = {}
            if line:
                labels['stable'] = line[-1]
            if len(line) > 1 and plan.get('rollback_label', True):
                labels[registry_lib.ROLLBACK_LABEL] = line[-2]
            if plan['canary'] is not None:
                labels['canary'] = plan['canary']
            saved = {path: _read_or_none(path) for path in (self.target.config_path, self.target.traffic_path)}
            pushed = [self.registry.version(v).pushed for v in sorted({version, *plan['changes']})]
            # A decision that moves nothing (an approval, a rejection of a candidate) leaves the serving files
            # alone: rewriting them would drop a version a staged promotion is loading.
            moves = (labels, plan['percent']) != (decisions[-1].labels if decisions else {}, state.canary_percent)
            try:
                pending = self._take_effect(labels, plan['percent']) if moves else None
                if pending:
                    return pending
                decision = ledger.prepare(
                    decisions, action=plan['action'], model_version=version, actor=self.user, reason=reason.strip(),
                    model_base_path=self.registry.model_base_path, changes=plan['changes'], labels=labels,
                    canary_percent=plan['percent'], evidence=plan['evidence'], policy_sha256=self.policy.sha256,
                    serving_config=self.target.config_path)
                try:
                    decision = ledger.write(self.store, decision, [p for p in pushed if p is not None])
                except Exception as error:  # a remote store may have written it and failed to say so
                    decision = _recorded_after_all(self.store, decision, error)
            except BaseException:
                # Not recorded, or the servers never confirmed it: nothing may serve that the history
                # does not show. The versions the old labels name are still in the policy (see
                # _take_effect), so the old config is valid for servers that already read the new one.
                for path, content in saved.items():
                    _restore(path, content)
                raise
            if labels and moves:  # recorded: now the versions no label needs may unload
                labels_lib.write_labels(self.target.config_path, labels, self.target.model_name)
            return decision

    def check_config(self, decisions) -> None:
        """Refuses to go on when the serving config's labels are not the recorded ones."""
        found = config_drift(self.target, decisions)
        if found:
            raise ConfigDrift(found + ': something changed serving outside the registry (an edit, `serving-labels`, '
                              'a ReloadConfig request). Find out what, then put the recorded labels back with '
                              '`taxi-pipeline models sync --reason ...`')

    def sync(self, reason: str) -> Optional[Pending]:
        """Writes the labels and traffic share the history records (repairs a config changed by hand)."""
        if not reason or not reason.strip():
            raise ValueError('--reason is required')
        self.policy.require(self.user, policy_lib.PROMOTE, 'rewrite the serving config')
        with ledger.append_lock(self.metadata_path):
            decisions = self.registry.decisions()
            ledger.verify(decisions)
            if not decisions:
                raise NotAllowed('nothing was released yet: there are no recorded labels to put back')
            last = decisions[-1]
            pending = self._take_effect(dict(last.labels), last.canary_percent)
            if pending:
                return pending
            labels_lib.write_labels(self.target.config_path, dict(last.labels), self.target.model_name)
            self.emit_line(f'{self.target.config_path}: labels as recorded by decision #{last.sequence} '
                           f'(sync by {self.user}: {reason.strip()})')
            return None

    def _take_effect(self, labels: Dict[str, int], percent: float) -> Optional[Pending]:
        """Moves the labels and the traffic share; confirms with --server. Returns Pending if a version must
        load first. The policy keeps the versions it loaded until the decision is recorded."""
        t = self.target
        if not labels:  # an approval before anything was released: no serving change
            return None
        fresh = not os.path.exists(t.config_path)
        if fresh:
            labels_lib.create_config(t.config_path, t.model_name, self.registry.model_base_path)
        loaded = labels_lib.loaded_versions(t.config_path, t.model_name)
        # A config no server has read yet is written in its final state at once.
        pending = labels_lib.write_labels(t.config_path, labels, t.model_name, staged=not fresh, keep=loaded)
        if pending:
            if not t.servers:
                self.emit_line(f'staged: {t.config_path} now also loads version(s) '
                               f'{", ".join(map(str, sorted(pending)))}; labels unchanged and nothing recorded yet. '
                               'TF Serving moves a label only to a loaded version: once every server reports them '
                               'AVAILABLE, run the same command again (or pass --server URL to wait here).')
                return Pending(sorted(pending))
            for server in t.servers:
                for version in sorted(pending):
                    self._wait(server, f'versions/{version}', version, f'version {version} AVAILABLE')
            pending = labels_lib.write_labels(t.config_path, labels, t.model_name, keep=loaded | set(pending))
            if pending:
                raise RuntimeError(f'version(s) {sorted(pending)} still not loadable after the wait')
        # After the labels: a canary share without its label falls back to stable, never fails.
        traffic_lib.write_split(t.traffic_path, t.model_name, percent)
        for server in t.servers:  # the command returns once every server answers with the new labels
            for label, version in sorted(labels.items()):
                self._wait(server, f'labels/{label}', version, f'{label} -> {version}')
        return None

    def _wait(self, server: str, target: str, version: int, what: str) -> None:
        """Until `server` reports `version` AVAILABLE at /v1/models/<name>/<target>."""
        url = f'{server.rstrip("/")}/v1/models/{self.target.model_name}/{target}'
        deadline = time.monotonic() + self.target.wait_seconds
        next_note = time.monotonic() + 10
        while True:
            state = _version_state(url, version)
            if state == 'AVAILABLE':
                self.emit_line(f'  {server}: {what}')
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f'{server} did not report {what} within {self.target.wait_seconds:.0f} s (last: '
                                   f'{state}); {self.target.config_path} says so, but nothing was recorded: check the '
                                   'server, then run the command again')
            if time.monotonic() > next_note:
                self.emit_line(f'  waiting for {server}: {what} ({state})')
                next_note = time.monotonic() + 10
            time.sleep(0.1)


def _version_state(url: str, version: int) -> str:
    """The state the server reports for `version` at `url`: AVAILABLE, another state, or why none."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            statuses = json.loads(response.read()).get('model_version_status', [])
    except urllib.error.HTTPError as e:
        return f'HTTP {e.code}'
    except (OSError, ValueError) as e:
        return f'unreachable ({e})'
    states = {int(s.get('version', 0)): s.get('state', '?') for s in statuses}
    return states.get(int(version), f'answers version(s) {sorted(states)}')
