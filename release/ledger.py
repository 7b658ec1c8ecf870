"""Release decisions in ML Metadata: append-only, ordered, and tamper-evident.

Every approval, rejection, promotion, rollback and withdrawal is one
execution of type `ModelRelease` in the registry's context (one per model
base path, as the monitor's passes are), written in one `put_execution`
with an INPUT event from the PushedModel of every version it touched: the
lineage of a pushed model leads to every decision about it.

ML Metadata lets any client update an execution, so "never rewritten" is
made checkable: each record carries its sequence number, the digest of the
record before it and its own digest (SHA-256 over its fields and that
link). `verify` recomputes the chain and also flags a record ML Metadata
saw updated after it was written, and dates out of order; every command
refuses to append to a chain that does not verify, so a tampered history
stops releases until someone looks. Each record is named after its model
and sequence number, which ML Metadata keeps unique: two commands racing
for one number cannot both write it (and locally they queue on a lock).

Each record of format 3 is also signed by its actor's SSH key (release.signing), and verifying
checks every signature against the keys the approvers file lists for that actor: someone with
write access to the database can rebuild the chain, but signs only as themselves. What a chain
in the same database still cannot show: the newest records deleted together (the rest still
verifies). The serving files, compared with the history on every read, are the second witness.

A decision that changes serving is two records: its INTENT, recorded before the serving files
change, and a CONFIRM record of the outcome (release.transitions). The intent's unique name is
the compare-and-set that keeps two writers, on any store, from both acting.

Records carry their format version, and each format names the properties
its digest covers (FORMATS). A record is verified against its own format's
list, so a new field is added by a new format, and every record written
before it still verifies. Records from before format versions have none and
are format 1. Adding a property to a format that records already use would
break the chain of every one of them: never change a format, add one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

from foundation import file_lock, metadata_store

EXECUTION_TYPE = 'ModelRelease'
CONTEXT_TYPE = 'model_registry'
APPROVE, REJECT, PROMOTE, ROLLBACK, WITHDRAW = ('approve', 'reject', 'promote', 'rollback', 'withdraw')
# CONFIRM records the outcome of an intent (below); REPAIR puts back serving files changed outside the registry.
CONFIRM, REPAIR = 'confirm', 'repair'
ACTIONS = (APPROVE, REJECT, PROMOTE, ROLLBACK, WITHDRAW, CONFIRM, REPAIR)
# A decision that changes serving is recorded twice: its INTENT before the serving files change, and a CONFIRM
# record (evidence: the intent's sequence, the outcome, what the files said after) once it took effect or failed.
# A decision that changes no serving file (an approval) is one record, DONE. Records before format 3 are DONE.
DONE, INTENT = 'done', 'intent'
APPLIED, FAILED = 'applied', 'failed'

INT, DOUBLE, STRING = metadata_store_pb2.INT, metadata_store_pb2.DOUBLE, metadata_store_pb2.STRING
_PROPERTIES = {
    'sequence': INT, 'action': STRING, 'model_version': INT, 'actor': STRING, 'reason': STRING,
    'at_micros': INT, 'model_base_path': STRING,
    # The login account and host the command ran under (`actor` is the identity it claimed).
    'ran_as': STRING,
    # JSON {"<version>": ["<stage before>", "<stage after>"]} for every version whose stage changed.
    'changes': STRING,
    # JSON of the serving labels and the canary's traffic share once the decision took effect.
    'labels': STRING, 'canary_percent': DOUBLE,
    # JSON: what the decision rested on (drift reviewed, the canary test, the approval it used).
    'evidence': STRING,
    'policy_sha256': STRING, 'serving_config': STRING,
    'previous_digest': STRING, 'digest': STRING,
    # Which of FORMATS the record was written in; absent from records of format 1.
    'format_version': INT,
    # DONE or INTENT (format 3).
    'phase': STRING,
    # The actor's SSH signature of `digest` (format 3; release.signing). Not covered by the digest it signs.
    'signature': STRING,
}
# Format version -> the properties a record of that format carries and its digest covers, in no
# particular order (the digest is over canonical JSON). Never edit an entry: add a format.
FORMATS: Dict[int, Tuple[str, ...]] = {
    1: ('sequence', 'action', 'model_version', 'actor', 'reason', 'at_micros', 'model_base_path', 'ran_as',
        'changes', 'labels', 'canary_percent', 'evidence', 'policy_sha256', 'serving_config', 'previous_digest'),
}
FORMATS[2] = FORMATS[1] + ('format_version',)
FORMATS[3] = FORMATS[2] + ('phase',)
CURRENT_FORMAT = 3
# The properties Decision names; a later format's other properties travel in Decision.extra.
_NAMED = FORMATS[3]


@dataclasses.dataclass(frozen=True)
class Decision:
    """One recorded release decision."""

    sequence: int
    action: str
    model_version: int
    actor: str
    reason: str
    at_micros: int
    model_base_path: str
    ran_as: str
    changes: Dict[int, Tuple[str, str]]
    labels: Dict[str, int]
    canary_percent: float
    evidence: Dict
    policy_sha256: str
    serving_config: str
    previous_digest: str
    digest: str
    format_version: int = CURRENT_FORMAT
    phase: str = DONE
    signature: str = ''
    # Properties of a newer format than Decision names (a field added by a format, not yet an attribute).
    extra: Mapping[str, object] = dataclasses.field(default_factory=dict)
    execution_id: int = 0
    # ML Metadata's own clock: the record was updated after it was written if these differ.
    updated_after_write: bool = False

    def fields(self) -> Dict:
        return {'sequence': self.sequence, 'action': self.action, 'model_version': self.model_version,
                'actor': self.actor, 'reason': self.reason, 'at_micros': self.at_micros,
                'model_base_path': self.model_base_path, 'ran_as': self.ran_as,
                'changes': json.dumps({str(v): list(c) for v, c in sorted(self.changes.items())}),
                'labels': json.dumps(self.labels, sort_keys=True), 'canary_percent': float(self.canary_percent),
                'evidence': json.dumps(self.evidence, sort_keys=True), 'policy_sha256': self.policy_sha256,
                'serving_config': self.serving_config, 'previous_digest': self.previous_digest,
                'format_version': self.format_version, 'phase': self.phase, **self.extra}

    @property
    def intent(self) -> bool:
        return self.phase == INTENT


def digest_of(fields: Mapping) -> str:
    """SHA-256 over the properties the record's format covers (format 1 when it names none)."""
    version = int(fields.get('format_version') or 1)
    if version not in FORMATS:
        raise BrokenLedger(f'a release record in format {version}, which this code does not know: '
                           'upgrade it before changing releases')
    canonical = json.dumps({name: fields[name] for name in FORMATS[version]}, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _types(store) -> Tuple[int, int]:
    execution_type = store.put_execution_type(
        metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE, properties=_PROPERTIES), can_add_fields=True)
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name=CONTEXT_TYPE))
    return execution_type, context_type


def _decode(execution) -> Decision:
    p = execution.properties
    version = metadata_store.number(p, 'format_version', 1)
    kinds = {INT: 'int_value', DOUBLE: 'double_value', STRING: 'string_value'}
    extra = {name: getattr(p[name], kinds[_PROPERTIES.get(name, STRING)])
             for name in FORMATS.get(version, ()) if name not in _NAMED and name in p}
    return Decision(format_version=version, extra=extra,
        phase=p['phase'].string_value if 'phase' in p else DONE,
        signature=p['signature'].string_value if 'signature' in p else '',
        sequence=p['sequence'].int_value, action=p['action'].string_value, model_version=p['model_version'].int_value,
        actor=p['actor'].string_value, reason=p['reason'].string_value, at_micros=p['at_micros'].int_value,
        model_base_path=p['model_base_path'].string_value, ran_as=p['ran_as'].string_value,
        changes={int(v): tuple(c) for v, c in json.loads(p['changes'].string_value or '{}').items()},
        labels=json.loads(p['labels'].string_value or '{}'), canary_percent=p['canary_percent'].double_value,
        evidence=json.loads(p['evidence'].string_value or '{}'), policy_sha256=p['policy_sha256'].string_value,
        serving_config=p['serving_config'].string_value, previous_digest=p['previous_digest'].string_value,
        digest=p['digest'].string_value, execution_id=execution.id,
        updated_after_write=execution.last_update_time_since_epoch != execution.create_time_since_epoch)


def read(store, model_base_path: str) -> List[Decision]:
    """Every decision about the model at `model_base_path`, in sequence order."""
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, model_base_path)
    if context is None:
        return []
    executions = [e for e in store.get_executions_by_context(context.id) if e.type == EXECUTION_TYPE]
    return sorted((_decode(e) for e in executions), key=lambda d: (d.sequence, d.execution_id))


class BrokenLedger(RuntimeError):
    """The recorded history does not verify: something rewrote or removed a decision."""


def problems(decisions: List[Decision], policy) -> List[str]:
    """What is wrong with the chain (empty when it verifies). `policy` (release.policy.Policy) lists each
    person's keys: every decision of format 3 must carry a signature of its digest by a key listed for its
    actor, so a chain rebuilt by someone with write access to the store cannot speak for anyone else.
    Unsigned decisions (formats 1 and 2) are accepted only within the policy's `unsigned_history`."""
    from release import signing
    found, previous, signed_seen = [], '', False
    for expected, decision in enumerate(decisions, start=1):
        where = f'decision {decision.sequence} (execution {decision.execution_id})'
        if decision.sequence != expected:
            found.append(f'{where}: expected sequence {expected}: a decision is missing or two claim one number')
        if decision.previous_digest != previous:
            found.append(f'{where}: does not follow the decision before it (a decision was removed or inserted)')
        try:
            if digest_of(decision.fields()) != decision.digest:
                found.append(f'{where}: its content does not match its digest (it was rewritten)')
        except BrokenLedger as e:
            found.append(f'{where}: {e}')
        if decision.updated_after_write:
            found.append(f'{where}: ML Metadata shows it was updated after it was written')
        if expected > 1 and decision.at_micros < decisions[expected - 2].at_micros:
            found.append(f'{where}: dated before the decision it follows')
        if decision.format_version >= 3:
            signed_seen = True
            why = _signature_problem(decision, policy, signing)
            if why:
                found.append(f'{where}: {why}')
        elif signed_seen or decision.sequence > policy.unsigned_history:
            found.append(f'{where}: not signed, and {policy.path} accepts the first {policy.unsigned_history} '
                         'decision(s) unsigned (those recorded before signing began)')
        previous = decision.digest
    return found


def _signature_problem(decision: Decision, policy, signing) -> Optional[str]:
    if not decision.signature:
        return 'not signed'
    try:
        key = signing.signer(decision.signature, decision.digest.encode())
    except signing.BadSignature as e:
        return f'signature by {decision.actor} does not verify: {e}'
    if key not in policy.keys.get(decision.actor, ()):
        return (f'signed with key {signing.fingerprint(key)}, which {policy.path} does not list for '
                f'{decision.actor}: not their decision')
    return None


def verify(decisions: List[Decision], policy) -> None:
    found = problems(decisions, policy)
    if found:
        raise BrokenLedger('the release history does not verify; nothing was changed:\n  ' + '\n  '.join(found))


class Busy(RuntimeError):
    """Another release command holds the history (exit 4: nothing was done)."""


# How long a local command waits for another to record its decision before giving up, naming it.
APPEND_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def append_lock(metadata_path: Optional[str], wait_seconds: float = APPEND_WAIT_SECONDS) -> Iterator[None]:
    """Exclusive while a local command reads the chain's end and records its decision (on a cluster's store the
    record's unique name does the same, as a refusal instead of a wait). Waits up to `wait_seconds`, then
    raises Busy naming the holder."""
    if not metadata_path:
        yield
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock.exclusive(metadata_path + '.release.lock', wait_seconds))
        except file_lock.Held as busy:
            raise Busy(f'the release history is held by {busy.holder or "another release command"} for over '
                       f'{wait_seconds:.0f} s; nothing was done: run the command again once it has finished') from None
        yield


def now_micros() -> int:
    return int(time.time() * 1e6)


def format_time(micros, precise: bool = True) -> str:
    """A recorded time as the commands and the page show it (UTC), to the microsecond it was recorded
    with: `history --at` that text answers that decision's own state (whole seconds fell before it).
    `precise=False` for a chart's axis. '-' for none."""
    if not micros:
        return '-'
    seconds, fraction = divmod(int(micros), 1_000_000)
    return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(seconds)) + (f'.{fraction:06d}' if precise else '')


def parse_time(text: str) -> int:
    """Microseconds since the epoch of an ISO 8601 time (UTC unless it says), exactly: no float on the way,
    so a printed time reads back as the time recorded."""
    import datetime
    at = datetime.datetime.fromisoformat(text)
    at = at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)
    return (at - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def prepare(previous: List[Decision], *, action: str, model_version: int, actor: str, reason: str,
            model_base_path: str, changes: Mapping[int, Tuple[str, str]], labels: Mapping[str, int],
            canary_percent: float, evidence: Mapping, policy_sha256: str, serving_config: str,
            at_micros: Optional[int] = None, phase: str = DONE) -> Decision:
    """The decision that follows `previous` (the verified chain), digest included, not yet written."""
    if action not in ACTIONS:
        raise ValueError(f'unknown release action {action!r}')
    decision = Decision(
        sequence=len(previous) + 1, action=action, model_version=int(model_version), actor=actor, reason=reason,
        at_micros=at_micros or now_micros(), model_base_path=model_base_path, ran_as=_ran_as(),
        changes={int(v): tuple(c) for v, c in changes.items()}, labels=dict(labels),
        canary_percent=float(canary_percent), evidence=dict(evidence), policy_sha256=policy_sha256,
        serving_config=serving_config, previous_digest=previous[-1].digest if previous else '', digest='',
        phase=phase)
    return dataclasses.replace(decision, digest=digest_of(decision.fields()))


def signed(decision: Decision, key_path: str) -> Decision:
    """`decision` with its actor's signature of its digest (release.signing)."""
    from release import signing
    return dataclasses.replace(decision, signature=signing.sign(decision.digest.encode(), key_path))


def _ran_as() -> str:
    import getpass
    import socket
    try:
        account = getpass.getuser()
    except Exception:  # no login name (some containers): the uid says who
        account = f'uid {os.getuid()}'
    return f'{account}@{socket.gethostname()}'


def write(store, decision: Decision, pushed_models: List[metadata_store_pb2.Artifact]) -> Decision:
    """Records `decision` in one put_execution. Its name is unique per model and sequence number,
    and ML Metadata keeps execution names unique per type: of two writers racing for the same
    number, against any store, the second fails instead of forking the chain."""
    execution_type, context_type = _types(store)
    execution = metadata_store_pb2.Execution(type_id=execution_type,
                                             name=f'{decision.model_base_path}#{decision.sequence}',
                                             last_known_state=metadata_store_pb2.Execution.COMPLETE)
    recorded = {**decision.fields(), 'digest': decision.digest}
    if decision.signature:
        recorded['signature'] = decision.signature
    for name, value in recorded.items():
        if name not in FORMATS.get(decision.format_version, ()) and name not in ('digest', 'signature'):
            continue  # an older format's record carries only its own properties (format 1: no version)
        kind = _PROPERTIES[name]
        if kind == INT:
            execution.properties[name].int_value = value
        elif kind == DOUBLE:
            execution.properties[name].double_value = value
        else:
            execution.properties[name].string_value = value
    events = [(artifact, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)) for artifact in pushed_models]
    context = metadata_store_pb2.Context(type_id=context_type, name=decision.model_base_path)
    execution_id, _, _ = store.put_execution(execution, events, [context], reuse_context_if_already_exist=True)
    return dataclasses.replace(decision, execution_id=execution_id)
