"""What the pre-push gates add to a fresh 15k run: the infra validation and the slice gates.

Each repeat is a fresh `taxi-pipeline run` on the embedded sample with default settings, in its own process
(wall time), then, read back from ML Metadata, each component's time. LocalDagRunner runs one component at a
time, so a component's time is what it adds to the run. Then, on that run's own artifacts, in this process:
- the slice gates' one extra pass (`components.evaluator.slice_counts`: each gated slice's examples of each
  class in the eval split; the per-slice AUCs are TFMA's slices, computed before the gates existed);
- the infra validation's parts: the SavedModel loaded without warm-up, loaded and warmed (what the server
  does before a version takes traffic, as TF Serving does), and the whole check (`checks.validate`).
Prints every measurement, then medians and the gates' share of the run.

    .venv/bin/python benchmarks/gates_benchmark.py [--repeats 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_benchmark import VENV_BIN, measure  # noqa: E402

GATES = ('InfraValidation',)


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def parts(summary, config) -> dict:
    """The gates' parts on a finished run's artifacts (loads in this process; the run's took another)."""
    import types

    from components import evaluator
    from components.infra_validator import behaviour, checks
    from serving import servable
    model_dir = os.path.join(summary.outputs['Trainer']['model'], 'Format-Serving')
    examples = types.SimpleNamespace(uri=summary.outputs['CsvExampleGen']['examples'])
    with open(config.behaviour_suite_file) as f:
        suite = behaviour.load(f.read())
    # The first load in a process pays TensorFlow's one-time costs: discard it.
    servable.load('warm', 1, model_dir, warm=True)[0].close()
    found = {'slice counts': timed(evaluator.slice_counts, examples)}
    loaded, found['load, no warm-up'], _ = servable.load('m', 1, model_dir, warm=False)
    loaded.close()
    loaded, found['load + warm-up'], replayed = servable.load('m', 2, model_dir, warm=True)
    loaded.close()
    found['warm-up requests'] = replayed
    started = time.perf_counter()
    report = checks.validate(model_dir, checks.Limits.from_json(config.infra_limits.to_json()), suite,
                             log=lambda line: None)
    found['validate (all checks)'] = time.perf_counter() - started
    found['checks'] = len(report.checks)
    found['passed'] = report.passed
    return found


def one_run() -> dict:
    from pipeline import run_summary
    from pipeline.config import PipelineConfig
    with tempfile.TemporaryDirectory() as workspace:
        wall, rss, code = measure([os.path.join(VENV_BIN, 'taxi-pipeline'), 'run', '--workspace', workspace])
        if code != 0:
            raise SystemExit(f'the run failed (exit {code})')
        config = PipelineConfig.for_workspace(workspace)
        summary = run_summary.summarize_latest_run(config, wall_seconds=wall)
        return {'wall': wall, 'components': {c.node_id: c.seconds for c in summary.components},
                'infra': summary.infra or {}, 'parts': parts(summary, config)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        runs.append(one_run())
        run = runs[-1]
        gates = sum(run['components'].get(name, 0.0) for name in GATES)
        print(f'[{i + 1}/{args.repeats}] run {run["wall"]:.1f} s; InfraValidation {gates:.1f} s, Evaluator '
              f'{run["components"].get("Evaluator", 0.0):.1f} s; infra {run["infra"]}; parts '
              + ', '.join(f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}' for k, v in run['parts'].items()),
              flush=True)

    def median(values):
        return statistics.median(list(values))
    wall = median(r['wall'] for r in runs)
    print(f'\nFresh 15k run: {wall:.1f} s (median of {len(runs)})')
    for name in ('Evaluator',) + GATES:
        seconds = median(r['components'].get(name, 0.0) for r in runs)
        print(f'  {name:<22} {seconds:6.2f} s  {100 * seconds / wall:5.1f}% of the run')
    slice_counts = median(r['parts']['slice counts'] for r in runs)
    infra = median(sum(r['components'].get(name, 0.0) for name in GATES) for r in runs)
    print(f'  slice gates\' extra pass {slice_counts:6.2f} s (inside the Evaluator)')
    print(f'Gates together: {infra + slice_counts:.2f} s, {100 * (infra + slice_counts) / wall:.1f}% of the run '
          f'(the aim: under 5 s)')
    for key in ('load, no warm-up', 'load + warm-up', 'validate (all checks)'):
        print(f'  in process: {key:<22} {median(r["parts"][key] for r in runs):6.2f} s')
    warm = median(r['parts']['load + warm-up'] - r['parts']['load, no warm-up'] for r in runs)
    print(f'  warm-up: {warm:.2f} s for {runs[0]["parts"]["warm-up requests"]} requests (one per client '
          f'signature); the whole check: {runs[0]["parts"]["checks"]} checks, passed {runs[0]["parts"]["passed"]}')


if __name__ == '__main__':
    main()
