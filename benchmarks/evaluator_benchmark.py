"""The Evaluator's two paths side by side on the same artifacts: in process (components/model_evaluation.py)
and TFMA's executor (TFX's Evaluator on Beam, `evaluation_engine` 'tfma').

For each size: the eval split of the taxi sample (15k rows) or of a span drawn from it
(`prepare-data --rows N --seed 1`) through our ExampleGen, a taxi model (the latest the workspace's Trainer
wrote, or `--model`), the pipeline's EvalConfig and gates. Each repeat runs both paths alternately in this
process, the model as candidate alone and, with `--baseline`, against a copy of itself as the baseline (two
SavedModels scored, as a pipeline's candidate and pushed baseline are). TFMA evaluates at most
`--max-eval-examples` (the pipeline's sample, 50k; 0: the whole split), the in-process path always the whole
split. Prints each run's seconds and examples/s, then medians and the ratio of the rates, and the largest
difference between the two paths' metrics.

With `--before DIR` (a source tree of an earlier commit: `git worktree add DIR COMMIT`), each repeat also
runs the in-process path of that tree and of this one, each in a fresh process (as a pipeline's Evaluator
runs: model loading and first calls included), alternately, and prints their medians, the ratio and whether
they wrote the same metrics, validation and blessing. `--skip-tfma` leaves TFMA's executor out.

    .venv/bin/python benchmarks/evaluator_benchmark.py [--rows 15002 1500000] [--repeats 3] [--baseline]
        [--max-eval-examples 50000] [--model DIR] [--before DIR] [--skip-tfma]
"""

import argparse
import glob
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLE_ROWS = 15002


def latest_model(workspace: str) -> str:
    models = sorted(glob.glob(os.path.join(workspace, 'pipeline_root', 'Trainer', 'model', '*')),
                    key=lambda p: int(os.path.basename(p)))
    if not models:
        raise SystemExit('no Trainer model under the workspace: run `make run` first, or pass --model')
    return models[-1]


def examples_for(root: str, rows: int):
    """The span of `rows` rows (the sample itself at 15,002) through our ExampleGen."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components import csv_examples
    from pipeline import data
    data.prepare_sample(os.path.join(root, 'data'), rows=rows, seed=None if rows == SAMPLE_ROWS else 1)
    artifact = standard_artifacts.Examples()
    artifact.uri = os.path.join(root, 'examples')
    output = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=2),
        example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=1)]))
    csv_examples.Executor(BaseBeamExecutor.Context(beam_pipeline_args=[])).Do({}, {'examples': [artifact]}, {
        'input_base': os.path.join(root, 'data'),
        'input_config': proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='span', pattern='span-1/*')])),
        'output_config': proto_utils.proto_to_json(output),
        'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
        'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP})
    return artifact


def evaluate(root: str, name: str, examples, model_uri: str, baseline: bool, engine: str, max_eval_examples: int):
    """(seconds, examples evaluated, evaluation artifact) of one run of our Executor."""
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts, standard_component_specs as specs

    from components import evaluator
    from pipeline import dag
    from pipeline.config import Thresholds
    output = os.path.join(root, name)
    shutil.rmtree(output, ignore_errors=True)
    model = standard_artifacts.Model()
    model.uri, model.id = model_uri, 1
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = os.path.join(output, 'evaluation'), os.path.join(output, 'blessing')
    os.makedirs(blessing.uri)
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [model]}
    if baseline:
        inputs[specs.BASELINE_MODEL_KEY] = [baseline_copy(root, model_uri)]
    thresholds = Thresholds()
    properties = {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(dag.eval_config()),
                  'max_eval_examples': max_eval_examples, evaluator.EVALUATION_ENGINE: engine,
                  'min_auc': thresholds.min_auc, 'min_accuracy': thresholds.min_accuracy,
                  'max_auc_drop': thresholds.max_auc_drop}
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=os.path.join(output, 'tmp'), unique_id='1')
    started = time.perf_counter()
    evaluator.Executor(context).Do(inputs, {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
                                   properties)
    seconds = time.perf_counter() - started
    return seconds, evaluation.get_int_custom_property('evaluated_examples'), evaluation


def baseline_copy(root: str, model_uri: str):
    """A copy of the model, as a second Model artifact: the baseline is another SavedModel, as in a pipeline."""
    from tfx.types import standard_artifacts
    baseline = standard_artifacts.Model()
    baseline.uri, baseline.id = os.path.join(root, 'baseline-model'), 2
    if not os.path.exists(baseline.uri):
        shutil.copytree(model_uri, baseline.uri)
    return baseline


def in_child(tree: str, root: str, name: str, examples, model: str, baseline: bool):
    """(seconds, examples evaluated, evaluation uri) of one in-process run of `tree`'s code in a fresh process."""
    command = [sys.executable, os.path.abspath(__file__), '--child', tree, root, name, examples.uri,
               examples.split_names, model, '1' if baseline else '0']
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if result['path'] != 'in_process':
        raise SystemExit(f'{tree}: the in-process path did not run ({result["path"]})')
    return result['seconds'], result['evaluated'], result['uri']


def child(tree: str, root: str, name: str, examples_uri: str, split_names: str, model: str, baseline: str) -> int:
    sys.path.insert(0, os.path.abspath(tree))  # before anything imports `components`
    from tfx.types import standard_artifacts
    examples = standard_artifacts.Examples()
    examples.uri, examples.split_names = examples_uri, split_names
    from components import evaluator
    took, evaluated, evaluation = evaluate(root, name, examples, model, baseline == '1', evaluator.AUTO, 0)
    print(json.dumps({'seconds': took, 'evaluated': evaluated, 'uri': evaluation.uri,
                      'path': evaluation.get_string_custom_property(evaluator.PATH_PROPERTY)}))
    return 0


def same_outputs(before_uri: str, after_uri: str) -> bool:
    """Whether two in-process runs wrote the same metrics (every value, exactly) and validation."""
    import tensorflow_model_analysis as tfma

    def written(uri):
        return (sorted(m.SerializeToString(deterministic=True) for m in tfma.load_metrics(uri)),
                tfma.load_validation_result(uri).SerializeToString(deterministic=True))
    return written(before_uri) == written(after_uri)


def largest_difference(ours_uri: str, tfma_uri: str) -> float:
    """Largest absolute difference between the two paths' scalar metrics, over every slice they share."""
    from components.artifact_contents import metrics_by_slice
    ours, theirs = metrics_by_slice(ours_uri), metrics_by_slice(tfma_uri)
    largest = 0.0
    for label, (candidate, base) in theirs.items():
        for name, value in list(candidate.items()) + [('baseline ' + k, v) for k, v in base.items()]:
            mine = ours[label][1 if name.startswith('baseline ') else 0].get(name.replace('baseline ', ''))
            if mine is not None and math.isfinite(value) and math.isfinite(mine):
                largest = max(largest, abs(mine - value))
    return largest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--child']:
        return child(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, nargs='+', default=[SAMPLE_ROWS, 1_500_000])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--baseline', action='store_true',
                        help='score the model against a copy of itself as the baseline')
    parser.add_argument('--max-eval-examples', type=int, default=50_000, help="TFMA's sample; 0: the whole split")
    parser.add_argument('--model', help='a Trainer model directory (holding Format-Serving)')
    parser.add_argument('--workspace', default='workspace')
    parser.add_argument('--before', metavar='DIR', help="an earlier commit's source tree: its in-process path "
                        'side by side with this one')
    parser.add_argument('--skip-tfma', action='store_true', help="leave TFMA's executor out")
    args = parser.parse_args(argv)
    from components import evaluator
    model = args.model or latest_model(args.workspace)
    models = 2 if args.baseline else 1
    print(f'model {model}; {models} model(s) scored; TFMA at most {args.max_eval_examples or "all"} examples')
    with tempfile.TemporaryDirectory(prefix='evaluator-benchmark-') as root:
        for rows in args.rows:
            size_root = os.path.join(root, str(rows))
            started = time.perf_counter()
            examples = examples_for(size_root, rows)
            print(f'\n{rows:,} rows: examples in {time.perf_counter() - started:.1f} s')
            engines = [] if args.skip_tfma else [evaluator.AUTO, evaluator.TFMA]
            trees = {'before': args.before, 'after': os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
            runs = (list(trees) if args.before else []) + engines
            rates = {run: [] for run in runs}
            seconds = {run: [] for run in runs}
            last, counts = {}, {}
            for repeat in range(args.repeats):
                for run in runs:
                    if run in trees:
                        took, evaluated, last[run] = in_child(trees[run], size_root, f'{run}-{repeat}', examples,
                                                              model, args.baseline)
                        path = f'{run}: in_process'
                    else:
                        took, evaluated, evaluation = evaluate(size_root, f'{run}-{repeat}', examples, model,
                                                               args.baseline, run, args.max_eval_examples)
                        path, last[run] = evaluation.get_string_custom_property(evaluator.PATH_PROPERTY), evaluation.uri
                    rates[run].append(evaluated / took)
                    seconds[run].append(took)
                    counts[run] = evaluated
                    print(f'  repeat {repeat + 1} {path:20s} {evaluated:>9,} examples in {took:6.1f} s: '
                          f'{evaluated / took:>9,.0f} examples/s', flush=True)
            if args.before:
                before, after = statistics.median(rates['before']), statistics.median(rates['after'])
                print(f'  median, each in a fresh process: before {statistics.median(seconds["before"]):.1f} s, '
                      f'{before:,.0f} examples/s; after {statistics.median(seconds["after"]):.1f} s, '
                      f'{after:,.0f} examples/s; ratio {after / before:.2f}; same metrics and validation: '
                      f'{same_outputs(last["before"], last["after"])}')
            if not engines:
                continue
            ours, tfma = statistics.median(rates[evaluator.AUTO]), statistics.median(rates[evaluator.TFMA])
            print(f'  median: in process {statistics.median(seconds[evaluator.AUTO]):.1f} s, '
                  f'{ours:,.0f} examples/s; TFMA {statistics.median(seconds[evaluator.TFMA]):.1f} s, '
                  f'{tfma:,.0f} examples/s; ratio {ours / tfma:.1f}')
            if counts[evaluator.AUTO] == counts[evaluator.TFMA]:
                print(f'  largest metric difference: '
                      f'{largest_difference(last[evaluator.AUTO], last[evaluator.TFMA]):.2e}')
            else:
                print('  metrics not compared: TFMA evaluated its sample (--max-eval-examples 0 compares)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
