"""How long a release decision takes with a long history: reading it, verifying every signature, recording.

In one run, on a registry of two pushed versions (their lineage written to a fresh SQLite ML Metadata
store as the Pusher's would be) and a history of --decisions signed decisions (alternating canary shares,
as a busy year of releases leaves), the same transition, a canary share change (intent, serving files,
confirmation: two signed records), timed end to end through `release.transitions.Release`, against the
reference of the same transition on a history of 10 decisions. Also the parts: reading the history, and
verifying it (digests and signatures).

    .venv/bin/python benchmarks/transition_benchmark.py [--decisions 1000] [--repeats 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402
from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: E402

from foundation import metadata_store  # noqa: E402
from release import ledger, policy as policy_lib, registry, transitions  # noqa: E402

MODEL = 'chicago-taxi'
APPROVER, PROMOTER = 'alice@example.com', 'bob@example.com'


def _artifact_type(store, name):
    return store.put_artifact_type(pb.ArtifactType(name=name))


def push(store, base, version):
    """A version directory and the lineage the Pusher leaves: Model and blessing in, PushedModel out."""
    directory = os.path.join(base, str(version))
    os.makedirs(os.path.join(directory, 'variables'))
    with open(os.path.join(directory, 'saved_model.pb'), 'wb') as f:
        f.write(os.urandom(1 << 20))
    model = pb.Artifact(type_id=_artifact_type(store, 'Model'), uri=f'/pipeline/Trainer/model/{version}')
    model.custom_properties['drift_verdict'].string_value = 'no_drift'
    blessing = pb.Artifact(type_id=_artifact_type(store, 'ModelBlessing'), uri=f'/pipeline/Evaluator/{version}')
    blessing.custom_properties['blessed'].int_value = 1
    pushed = pb.Artifact(type_id=_artifact_type(store, 'PushedModel'), uri=f'/pipeline/Pusher/{version}')
    pushed.custom_properties['pushed'].int_value = 1
    pushed.custom_properties['pushed_destination'].string_value = directory
    pushed.custom_properties['pushed_version'].string_value = str(version)
    model.id, blessing.id, pushed.id = store.put_artifacts([model, blessing, pushed])
    pusher = pb.Execution(type_id=store.put_execution_type(pb.ExecutionType(name='Pusher')),
                          last_known_state=pb.Execution.COMPLETE)

    def event(artifact_id, kind, key):
        e = pb.Event(artifact_id=artifact_id, type=kind)
        e.path.steps.add().key = key
        return e
    # put_execution writes the artifacts it is given whole: each goes in complete, with its id.
    store.put_execution(pusher, [(model, event(model.id, pb.Event.INPUT, 'model')),
                                 (blessing, event(blessing.id, pb.Event.INPUT, 'model_blessing')),
                                 (pushed, event(pushed.id, pb.Event.OUTPUT, 'pushed_model'))],
                        [pb.Context(type_id=store.put_context_type(pb.ContextType(name='pipeline_run')),
                                    name=f'run-{version}')])


class Registry:
    """A workspace: store, two versions (stable and canary), signing keys, the policy naming them."""

    def __init__(self, root, decisions):
        self.root = root
        self.base = os.path.join(root, MODEL)
        self.store = metadata_store.connect(os.path.join(root, 'metadata.sqlite'))
        for version in (1, 2):
            push(self.store, self.base, version)
        self.keys = {}
        for name in (APPROVER, PROMOTER):
            path = os.path.join(root, name.split('@')[0])
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', path], check=True)
            self.keys[name] = path
        policy_file = os.path.join(root, 'approvers.yaml')
        with open(policy_file, 'w') as f:
            yaml.safe_dump({'roles': {'approve': [APPROVER], 'promote': [PROMOTER]},
                            'keys': {n: [open(k + '.pub').read().strip()] for n, k in self.keys.items()}}, f)
        self.policy = policy_lib.load(policy_file)
        self.target = transitions.ServingTarget(os.path.join(root, 'models.config'),
                                                os.path.join(root, 'traffic.json'), MODEL)
        self.release = transitions.Release(self.store, self.base, self.target, self.policy, PROMOTER,
                                           os.path.join(root, 'metadata.sqlite'), lambda line: None,
                                           self.keys[PROMOTER])
        self._history(decisions)

    def _history(self, count):
        """1 approved and stable, 2 the canary; then canary share changes until `count` records."""
        approver = transitions.Release(self.store, self.base, self.target, self.policy, APPROVER,
                                       self.release.metadata_path, lambda line: None, self.keys[APPROVER])
        approver.approve(1, 'first release')
        self.release.promote(1, 'stable', 'first release')
        self.release.promote(2, 'canary', 'canary', percent=10)
        records = ledger.read(self.store, self.base)
        # The rest written directly (signed, chained) as the same share changes would: a long history
        # without a year of command runs. Each is one DONE record of the canary's labels and share.
        state = registry.replay(records)
        while len(records) < count:
            decision = ledger.prepare(records, action=ledger.PROMOTE, model_version=2, actor=PROMOTER,
                                      reason='ramp', model_base_path=self.base, changes={},
                                      labels=state.labels, canary_percent=state.canary_percent,
                                      evidence={}, policy_sha256=self.policy.sha256,
                                      serving_config=self.target.config_path)
            records.append(ledger.write(self.store, ledger.signed(decision, self.keys[PROMOTER]), []))

    def transition(self, percent):
        start = time.perf_counter()
        self.release.promote(2, 'canary', f'ramp to {percent}', percent=percent)
        return time.perf_counter() - start

    def parts(self):
        start = time.perf_counter()
        decisions = ledger.read(self.store, self.base)
        read = time.perf_counter() - start
        start = time.perf_counter()
        ledger.verify(decisions, self.policy)
        return len(decisions), read, time.perf_counter() - start


def measure(decisions, repeats):
    with tempfile.TemporaryDirectory() as root:
        workspace = Registry(root, decisions)
        times = [workspace.transition(10 + (i % 2) * 10 + 5) for i in range(repeats)]
        count, read, verify = workspace.parts()
        return count, statistics.median(times), read, verify


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--decisions', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    print(f'a canary share change (intent, serving files, confirmation), median of {args.repeats}:')
    print(f'  {"history":<26} {"transition s":>13} {"read s":>8} {"verify s":>9}')
    results = {}
    for label, count in (('reference', 10), ('long', args.decisions)):
        records, transition, read, verify = measure(count, args.repeats)
        results[label] = transition
        print(f'  {f"{records} records ({label})":<26} {transition:>13.3f} {read:>8.3f} {verify:>9.3f}')
    print(f'  long / reference: {results["long"] / results["reference"]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
