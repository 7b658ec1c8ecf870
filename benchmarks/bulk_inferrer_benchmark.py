"""The BulkInferrer's executor on a finished run's artifacts: the blessed candidate scoring the eval split into
PredictionLogs, as the pipeline's BulkInferrer task does.

Takes a workspace a run left (`taxi-pipeline run --workspace W`, on the sample or a span drawn from it with
`prepare-data --rows N --seed 1`): its latest ExampleGen examples and Trainer model. Each repeat runs the
executor of this tree and, with `--before DIR` (a source tree of an earlier commit: `git worktree add DIR
COMMIT`), of that tree, each in a fresh process (model loading and first calls included, as a task pays them),
alternately. Prints each run's seconds and examples/s, then medians, the ratio, and whether both wrote the
same PredictionLogs.

    .venv/bin/python benchmarks/bulk_inferrer_benchmark.py --workspace W [--repeats 3] [--before DIR]
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def latest(workspace: str, component: str, output: str) -> str:
    found = glob.glob(os.path.join(workspace, 'pipeline_root', component, output, '*'))
    if not found:
        raise SystemExit(f'no {component} {output} under {workspace}: run the pipeline there first')
    return max(found, key=lambda path: int(os.path.basename(path)))


def in_child(tree: str, examples_uri: str, model_uri: str, out: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), '--child', tree, examples_uri, model_uri, out]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(tree: str, examples_uri: str, model_uri: str, out: str) -> int:
    sys.path.insert(0, os.path.abspath(tree))  # before anything imports `components`
    os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
    import time

    from tfx.types import standard_artifacts
    from components.bulk_inferrer import executor
    examples, model, blessing, result = (standard_artifacts.Examples(), standard_artifacts.Model(),
                                         standard_artifacts.ModelBlessing(), standard_artifacts.InferenceResult())
    examples.uri, examples.split_names = examples_uri, '["train", "eval"]'
    model.uri, result.uri = model_uri, out
    blessing.set_int_custom_property('blessed', 1)
    started = time.perf_counter()
    executor.Executor().Do({'examples': [examples], 'model': [model], 'model_blessing': [blessing]},
                           {'inference_result': [result]}, {'splits': 'eval', 'explain': 0})
    print(json.dumps({'seconds': time.perf_counter() - started,
                      'examples': result.get_int_custom_property('examples'), 'uri': out}))
    return 0


def same_logs(before: str, after: str) -> bool:
    from components.bulk_inferrer import scoring
    return ([log.SerializeToString(deterministic=True) for log in scoring.read_prediction_logs(before)] ==
            [log.SerializeToString(deterministic=True) for log in scoring.read_prediction_logs(after)])


def main() -> int:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        return child(*sys.argv[2:6])
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workspace', required=True)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--before', metavar='DIR', help="an earlier commit's source tree, run side by side")
    args = parser.parse_args()
    examples_uri = latest(args.workspace, 'CsvExampleGen', 'examples')
    model_uri = latest(args.workspace, 'Trainer', 'model')
    trees = {'after': HERE, **({'before': args.before} if args.before else {})}
    seconds = {name: [] for name in trees}
    last = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                out = os.path.join(scratch, f'{name}-{repeat}')
                found = in_child(tree, examples_uri, model_uri, out)
                seconds[name].append(found['seconds'])
                last[name] = out
                print(f'[{repeat + 1}/{args.repeats}] {name}: {found["seconds"]:.2f} s, {found["examples"]:,} '
                      f'examples, {found["examples"] / found["seconds"]:,.0f} examples/s', flush=True)
        after = statistics.median(seconds['after'])
        print(f'median after {after:.2f} s')
        if args.before:
            before = statistics.median(seconds['before'])
            print(f'median before {before:.2f} s; ratio (before / after) {before / after:.2f}; '
                  f'same PredictionLogs: {same_logs(last["before"], last["after"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
