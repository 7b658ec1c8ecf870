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

from release import ledger, policy as policy_lib, registry as registry_lib, signing
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


class InFlux(ledger.Busy):
    """Another command's decision is taking effect (exit 4: busy, try again once it is confirmed)."""


def config_drift(target: ServingTarget, decisions, state=None) -> Optional[str]:
    """How the serving files (the config's labels, the traffic share) differ from what the history says took
    effect, or None (also before any decision). An intent not yet confirmed is named too."""
    if not decisions:
        return None
    state = state if state is not None else registry_lib.replay(decisions)
    show = lambda labels: ', '.join(f'{k}={v}' for k, v in sorted(labels.items())) or 'none'  # noqa: E731
    found = []
    if not os.path.exists(target.config_path):
        if state.labels:
            found.append(f'{target.config_path} does not exist, but the history says labels {show(state.labels)}')
    else:
        labels = labels_lib.read_labels(target.config_path, target.model_name)
        if labels != state.labels:
            found.append(f'{target.config_path} labels {show(labels)}, but the history says {show(state.labels)}')
    try:
        percent = float(traffic_lib.read_split(target.traffic_path).get(target.model_name, 0.0))
    except ValueError as e:
        percent = None
        found.append(str(e))
    if percent is not None and abs(percent - state.canary_percent) > 1e-9:
        found.append(f'{target.traffic_path} gives the canary {percent:g}% of the traffic, but the history says '
                     f'{state.canary_percent:g}%')
    for intent in state.unconfirmed:
        found.append(f'decision #{intent.sequence} ({intent.action} {intent.model_version} by {intent.actor}, '
                     f'{ledger.format_time(intent.at_micros)} UTC) was recorded but not confirmed: it was being '
                     'applied, and may or may not serve')
    if not found:
        return None
    return '; '.join(found) + f' (as of decision #{decisions[-1].sequence})'


# How long a confirmation waits for a store another process holds (each ML Metadata attempt itself retries
# for about 20 s on a locked SQLite store), before the intent is left unconfirmed for `models sync`.
CONFIRM_RETRY_SECONDS = 120.0


def _retrying_while_busy(call, seconds: float, emit_line):
    from foundation import metadata_store
    deadline, pause = time.monotonic() + seconds, 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if not metadata_store.is_busy(error) or time.monotonic() + pause > deadline:
                raise
            emit_line(f'  the ML Metadata store is busy; trying again in {pause:.0f} s')
            time.sleep(pause)
            pause = min(pause * 2, 16.0)


class Conflict(InFlux):
    """Another command recorded the same place in the history first (exit 4: nothing was changed)."""


def served_files_problems(registry, state) -> List[str]:
    """What is wrong with the versions the labels serve: a directory gone (TF Serving cannot load it), or files
    other than those promoted (or approved, for the canary) - what serves is not what was decided."""
    found = []
    for label, version in sorted(state.labels.items()):
        where = registry.version(version)
        if not where.on_disk:
            found.append(f'version {version} ({label}) has no saved_model.pb in {where.directory}: it cannot load')
            continue
        approval = state.approved(version)
        expected = state.promoted_digests.get(version) or (approval.evidence.get('content_sha256') if approval
                                                            else None)
        if expected and registry_lib.content_digest(where.directory) != expected:
            found.append(f'the files of version {version} ({label}) changed since they were approved and promoted')
    return found


def _recorded_after_all(store, decision, error: BaseException):
    """`decision` if a write that raised `error` recorded it after all; Conflict if another command took its
    place in the history; else raises `error`."""
    try:
        found = [d for d in ledger.read(store, decision.model_base_path) if d.sequence == decision.sequence]
    except Exception:
        found = []
    for other in found:
        if other.digest == decision.digest:
            return other
        raise Conflict(f'another command recorded decision #{other.sequence} first ({other.action} '
                       f'{other.model_version} by {other.actor}, run as {other.ran_as}): nothing was changed; '
                       'look at the history and run the command again if it still applies') from None
    raise error


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
                 metadata_path: Optional[str] = None, emit_line: Callable[[str], None] = print,
                 signing_key: Optional[str] = None):
        self.store = store
        # The actor's SSH key (release.signing.signing_key: --signing-key, else $TAXI_PIPELINE_SIGNING_KEY).
        self.signing_key = signing_key
        self.confirmation: Optional[ledger.Decision] = None
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
                                 f'({ledger.format_time(verdict.at_micros)} UTC: {verdict.reason}); it needs a new '
                                 'approval')
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
            digest = self._rollback_target_ready(state, target)
            changes = {state.stable: (STABLE, ARCHIVED), target: (state.stage(target), STABLE)}
            if state.canary is not None:
                changes[state.canary] = (CANARY, ARCHIVED)
            # No `rollback` label after a rollback: the version before the restored one is likely not loaded, and
            # waiting for it to load must not delay the restore. A second rollback loads it first (see --server).
            return dict(action=ledger.ROLLBACK, version=target, changes=changes, stable_line=state.stable_line[:-1],
                        canary=None, percent=0.0, evidence={**(evidence or {}), 'rolled_back': state.stable,
                                                            'content_sha256': digest},
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
        evidence = dict(evidence or {})
        if percent > MAX_UNAPPROVED_PERCENT:  # production in all but name: the rules for stable hold
            approval, current = self._production_ready(
                state, version, f'give version {version} more than {MAX_UNAPPROVED_PERCENT:g}% of the traffic')
            evidence.update(approval=approval.sequence, approved_by=approval.actor, content_sha256=current)
        changes = {} if state.canary == version else {version: (state.stage(version), CANARY)}
        return dict(action=ledger.PROMOTE, changes=changes, stable_line=state.stable_line, canary=version,
                    percent=percent, evidence=evidence)

    def _production_ready(self, state, version: int, doing: str):
        """The rules for giving `version` production traffic, on every path that does (stable, or a canary above
        the cap): approved by someone who still has the role and is not the acting user, the files unchanged
        since, the drift reviewed. Returns (the approval, the files' digest)."""
        approval = state.approved(version)
        if approval is None:
            raise NotAllowed(f'version {version} has no approval, which {doing} needs: someone with the approve role '
                             f'({", ".join(sorted(self.policy.members.get(policy_lib.APPROVE, ()))) or "nobody"}) '
                             f'must run `taxi-pipeline models approve {version} --reason ...` first')
        if approval.actor not in self.policy.members.get(policy_lib.APPROVE, ()):
            raise NotAllowed(f'version {version} was approved by {approval.actor}, who no longer has the approve role '
                             f'in {self.policy.path}: it needs a new approval')
        if approval.actor == self.user:
            raise NotAllowed(f'{self.user} approved version {version}, so someone else must {doing} '
                             '(separation of duties)')
        found = self.registry.version(version)
        if found.needs_drift_review and not approval.evidence.get('drift_reviewed'):
            raise NotAllowed(f'version {version} needs its drift reviewed, and approval #{approval.sequence} did not '
                             'say it was (approve again with --drift-reviewed)')
        current = registry_lib.content_digest(found.directory)
        if approval.evidence.get('content_sha256') != current:
            raise NotAllowed(f'the files of version {version} changed since {approval.actor} approved them '
                             f'(decision #{approval.sequence}): what was approved is not what would serve; it needs '
                             'a new approval')
        return approval, current

    def _to_stable(self, state, version: int, evidence):
        if state.stable == version:
            raise NotAllowed(f'version {version} is the stable version already')
        approval, current = self._production_ready(state, version, f'promote version {version} to stable')
        changes = {version: (state.stage(version), STABLE)}
        if state.stable is not None:
            changes[state.stable] = (STABLE, ARCHIVED)
        if state.canary not in (None, version):
            changes[state.canary] = (CANARY, ARCHIVED)
        return dict(action=ledger.PROMOTE, changes=changes, stable_line=state.stable_line + [version], canary=None,
                    percent=0.0, evidence={**(evidence or {}), 'approval': approval.sequence,
                                           'approved_by': approval.actor, 'content_sha256': current})

    def _rollback_target_ready(self, state, target: int) -> str:
        """A rollback serves `target` again: it must still be there, be what was promoted, and not be rejected
        since. Returns its files' digest."""
        found = self.registry.version(target)
        if not found.on_disk:
            raise NotAllowed(f'cannot roll back to version {target}: {found.directory} has no saved_model.pb (deleted '
                             'or moved); promote another approved version instead')
        verdict = state.verdicts.get(target)
        if verdict is not None and verdict.action == ledger.REJECT:
            raise NotAllowed(f'cannot roll back to version {target}: {verdict.actor} rejected it '
                             f'(decision #{verdict.sequence}: {verdict.reason})')
        promoted = state.promoted_digests.get(target)
        current = registry_lib.content_digest(found.directory)
        if promoted != current:
            raise NotAllowed(f'cannot roll back to version {target}: its files changed since it was promoted to stable '
                             '(or no digest was recorded then): what was approved is not what would serve')
        return current

    # -- record, apply, confirm ----------------------------------------------------------------------

    def _transition(self, version: Optional[int], reason: str, decide):
        if not reason or not reason.strip():
            raise ValueError('every decision needs a reason (--reason): the audit history says why')
        key = signing.signing_key(self.signing_key)  # before anything: a decision nobody can sign is refused
        with ledger.append_lock(self.metadata_path):
            decisions = self.registry.decisions()
            ledger.verify(decisions, self.policy)
            state = registry_lib.replay(decisions)
            self._require_settled(state)
            self.check_config(state, decisions)
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
            pushed = [self.registry.version(v).pushed for v in sorted({version, *plan['changes']})]
            pushed = [p for p in pushed if p is not None]
            record = dict(action=plan['action'], model_version=version, reason=reason.strip(),
                          changes=plan['changes'], labels=labels, canary_percent=plan['percent'],
                          evidence=plan['evidence'])
            # A decision that moves nothing (an approval, a rejection of a candidate) leaves the serving files
            # alone (rewriting them would drop a version a staged promotion is loading): one record.
            if (labels, plan['percent']) == (state.labels, state.canary_percent):
                return self._record(decisions, key, pushed, **record)
            pending = self._stage(labels)
            if pending:
                return pending
            intent = self._record(decisions, key, pushed, phase=ledger.INTENT, **record,
                                  lease_seconds=self._lease_seconds(labels))
        # Recorded: from here the unconfirmed intent keeps every other command out (its lease), so the lock is
        # not held while servers load and answer.
        return self._apply_and_confirm(decisions + [intent], intent, key, pushed)

    def _record(self, decisions, key: str, pushed, *, lease_seconds: float = 0.0, phase: str = ledger.DONE,
                actor: Optional[str] = None, **fields) -> ledger.Decision:
        """Signs and records the decision that follows `decisions`. Its sequence number is the compare-and-set:
        ML Metadata keeps execution names (model#sequence) unique, so of two commands that read the same
        history, on one machine or many, only the first records; the other fails here, before it changed any
        serving file."""
        evidence = dict(fields.pop('evidence'))
        if lease_seconds:
            # Until then the intent is its command's to confirm; after, the command is presumed dead.
            evidence['lease_until_micros'] = ledger.now_micros() + int(lease_seconds * 1e6)
        decision = ledger.prepare(decisions, actor=actor or self.user, model_base_path=self.registry.model_base_path,
                                  policy_sha256=self.policy.sha256, serving_config=self.target.config_path,
                                  phase=phase, evidence=evidence, **fields)
        decision = ledger.signed(decision, key)
        self.policy.require_key(decision.actor, signing.signer(decision.signature, decision.digest.encode()))
        try:
            return ledger.write(self.store, decision, pushed)
        except Exception as error:  # a remote store may have written it and failed to say so
            return _recorded_after_all(self.store, decision, error)

    def _lease_seconds(self, labels) -> float:
        waits = len(self.target.servers) * (len(labels) + 1)
        return 60.0 + waits * self.target.wait_seconds

    def _apply_and_confirm(self, decisions, intent: ledger.Decision, key: str, pushed,
                           reason: Optional[str] = None) -> ledger.Decision:
        """Applies a recorded intent to the serving files and records the outcome. On failure the files are put
        back and the failure is recorded, so the history says the intent never served."""
        saved = {path: _read_or_none(path) for path in (self.target.config_path, self.target.traffic_path)}
        labels, percent = dict(intent.labels), intent.canary_percent
        confirm = dict(action=ledger.CONFIRM, model_version=intent.model_version, changes={},
                       reason=reason or f'confirms #{intent.sequence}')
        try:
            self._take_effect(labels, percent)
        except BaseException as error:
            for path, content in saved.items():
                _restore(path, content)
            observed, observed_percent = self._observed()
            why = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            try:
                self._record(decisions, key, pushed, labels=observed, canary_percent=observed_percent,
                             evidence={'intent': intent.sequence, 'outcome': ledger.FAILED,
                                       'error': why},
                             **confirm)
            except Exception as recording:  # the intent stays unconfirmed: every command will say so
                self.emit_line(f'the failure of decision #{intent.sequence} could not be recorded ({recording}): '
                               'run `taxi-pipeline models sync --reason ...` once the store answers')
            raise
        observed, observed_percent = self._observed()
        # The files changed: the confirmation must land. A store another process holds is waited for.
        confirmation = _retrying_while_busy(
            lambda: self._record(decisions, key, pushed, labels=observed, canary_percent=observed_percent,
                                 evidence={'intent': intent.sequence, 'outcome': ledger.APPLIED,
                                           'servers': list(self.target.servers)}, **confirm),
            CONFIRM_RETRY_SECONDS, self.emit_line)
        self.confirmation = confirmation
        if labels:  # confirmed: now the versions no label needs may unload
            labels_lib.write_labels(self.target.config_path, labels, self.target.model_name)
        return intent

    def _observed(self):
        """(labels, canary percent) the serving files say now."""
        t = self.target
        labels = labels_lib.read_labels(t.config_path, t.model_name) if os.path.exists(t.config_path) else {}
        return labels, float(traffic_lib.read_split(t.traffic_path).get(t.model_name, 0.0))

    def _require_settled(self, state) -> None:
        """Refuses to decide while an intent is unconfirmed: its command is applying it (the lease), or died."""
        if not state.unconfirmed:
            return
        intent = state.unconfirmed[-1]
        lease = int(intent.evidence.get('lease_until_micros', 0))
        what = (f'decision #{intent.sequence} ({intent.action} {intent.model_version} by {intent.actor}, '
                f'run as {intent.ran_as}, recorded {ledger.format_time(intent.at_micros)} UTC)')
        if ledger.now_micros() < lease:
            raise InFlux(f'{what} is taking effect: wait for its command to confirm it '
                         f'(its lease ends {ledger.format_time(lease)} UTC)')
        raise ConfigDrift(f'{what} was recorded but never confirmed: its command died while applying it. Compare '
                          'the serving files with it, then complete it with `taxi-pipeline models sync --reason ...`')

    def check_config(self, state, decisions) -> None:
        """Refuses to go on when the serving files do not say what the recorded history says."""
        found = config_drift(self.target, decisions, state)
        if found:
            raise ConfigDrift(found + ': something changed serving outside the registry (an edit, `serving-labels`, '
                              'a ReloadConfig request, a killed command). Find out what, then put the recorded state '
                              'back with `taxi-pipeline models sync --reason ...`')

    def _stage(self, labels) -> Optional[Pending]:
        """Adds the versions `labels` need to the config's loaded set (no label, no traffic share moves), and
        with --server waits until they load. Pending if the command must be run again once they loaded."""
        t = self.target
        if not labels:
            return None
        fresh = not os.path.exists(t.config_path)
        if fresh:  # a config no server has read yet is written in its final state when the decision applies
            return None
        loaded = labels_lib.loaded_versions(t.config_path, t.model_name)
        missing = sorted(set(labels.values()) - loaded)
        if not missing:
            return None
        labels_lib.write_labels(t.config_path, labels, t.model_name, staged=True, keep=loaded)
        if not t.servers:
            self.emit_line(f'staged: {t.config_path} now also loads version(s) {", ".join(map(str, missing))}; '
                           'labels unchanged and nothing recorded yet. TF Serving moves a label only to a loaded '
                           'version: once every server reports them AVAILABLE, run the same command again (or pass '
                           '--server URL to wait here).')
            return Pending(missing)
        for server in t.servers:
            for version in missing:
                self._wait(server, f'versions/{version}', version, f'version {version} AVAILABLE')
        return None

    def sync(self, reason: str) -> Optional[ledger.Decision]:
        """A recorded repair. With an intent its command never confirmed (it died), completes it: the intent
        was recorded after its rules were checked. Otherwise puts back the labels and traffic share the
        history records, over files changed outside the registry. Either way the repair is a decision."""
        if not reason or not reason.strip():
            raise ValueError('--reason is required')
        self.policy.require(self.user, policy_lib.PROMOTE, 'rewrite the serving config')
        key = signing.signing_key(self.signing_key)
        with ledger.append_lock(self.metadata_path):
            decisions = self.registry.decisions()
            ledger.verify(decisions, self.policy)
            state = registry_lib.replay(decisions)
            if not decisions:
                raise NotAllowed('nothing was released yet: there are no recorded labels to put back')
            if state.unconfirmed:
                intent = state.unconfirmed[-1]
                lease = int(intent.evidence.get('lease_until_micros', 0))
                if ledger.now_micros() < lease:
                    self._require_settled(state)
                if self._stage(intent.labels):
                    return None
                pushed = [self.registry.version(v).pushed for v in sorted({intent.model_version, *intent.changes})]
                self._apply_and_confirm(decisions, intent, key, [p for p in pushed if p is not None],
                                        reason=f'repair by {self.user}: {reason.strip()}')
                self.emit_line(f'completed decision #{intent.sequence} ({intent.action} {intent.model_version}): '
                               f'confirmed by #{self.confirmation.sequence}')
                return self.confirmation
            found = config_drift(self.target, decisions, state)
            if not found:
                self.emit_line('the serving files say what the history records: nothing to repair')
                return None
            if self._stage(state.labels):
                return None
            intent = self._record(decisions, key, [], phase=ledger.INTENT, action=ledger.REPAIR,
                                  model_version=state.stable or 0, reason=reason.strip(), changes={},
                                  labels=dict(state.labels), canary_percent=state.canary_percent,
                                  evidence={'found': found}, lease_seconds=self._lease_seconds(state.labels))
            self._apply_and_confirm(decisions + [intent], intent, key, [])
            self.emit_line(f'{self.target.config_path}: labels and traffic share as recorded, repair '
                           f'#{intent.sequence} confirmed by #{self.confirmation.sequence} '
                           f'({self.user}: {reason.strip()})')
            return intent

    def _take_effect(self, labels: Dict[str, int], percent: float) -> None:
        """Moves the labels and the traffic share; with --server, returns once every server answers each label
        with its version. The versions loaded before stay in the policy until the outcome is recorded."""
        t = self.target
        fresh = not os.path.exists(t.config_path)
        if fresh:  # no server has read it yet: written in its final state at once
            labels_lib.create_config(t.config_path, t.model_name, self.registry.model_base_path)
        loaded = labels_lib.loaded_versions(t.config_path, t.model_name)
        pending = labels_lib.write_labels(t.config_path, labels, t.model_name, staged=not fresh, keep=loaded)
        if pending:
            raise RuntimeError(f'version(s) {sorted(pending)} are not loaded: the labels cannot move to them')
        # After the labels: a canary share without its label falls back to stable, never fails.
        traffic_lib.write_split(t.traffic_path, t.model_name, percent)
        for server in t.servers:  # the command returns once every server answers with the new labels
            for label, version in sorted(labels.items()):
                self._wait(server, f'labels/{label}', version, f'{label} -> {version}')

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
