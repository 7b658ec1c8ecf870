"""Compile time, and the compiled spec run through the local KFP harness next to
LocalDagRunner on the same sample (same rows, steps and thresholds).

    .venv/bin/python benchmarks/kfp_benchmark.py [--rows 2000] [--train-steps 200] [--repeats 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), 'taxi-pipeline')


def timed(fn):
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=2000)
    parser.add_argument('--train-steps', type=int, default=200)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()

    import schemas
    from pipeline import data
    from pipeline.kfp_local_runner import LocalKfpRun, image_environment

    compile_times, local_times, harness_times = [], [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            data.prepare_sample(os.path.join(tmp, 'data'), rows=args.rows)
            compile_cmd = [CLI, 'compile', '--image', 'chicago-taxi-pipeline:bench',
                           '--pipeline-root', os.path.join(tmp, 'kfp_root'), '--data-root', os.path.join(tmp, 'data'),
                           '--serving-model-dir', os.path.join(tmp, 'kfp_serving'),
                           '--train-steps', str(args.train_steps), '--output-dir', os.path.join(tmp, 'compiled'),
                           # The harness runs tasks here, not in the image.
                           '--schema-file', schemas.CURATED_SCHEMA]
            compile_times.append(timed(lambda: subprocess.run(compile_cmd, check=True, capture_output=True)))
            spec = os.path.join(tmp, 'compiled', 'chicago_taxi_pipeline.yaml')
            local_cmd = [CLI, 'run', '--workspace', os.path.join(tmp, 'local'), '--data-root',
                         os.path.join(tmp, 'data'), '--train-steps', str(args.train_steps)]
            local_times.append(timed(lambda: subprocess.run(local_cmd, check=True, capture_output=True)))
            run = LocalKfpRun(spec, os.path.join(tmp, 'kfp_root'),
                              env=image_environment(os.path.join(REPO, 'Dockerfile')))
            harness_times.append(timed(run.run))
            print(f'[{i + 1}/{args.repeats}] compile {compile_times[-1]:5.1f} s   LocalDagRunner {local_times[-1]:5.1f} s'
                  f'   compiled spec via harness {harness_times[-1]:5.1f} s', flush=True)

    c, l, h = (statistics.median(x) for x in (compile_times, local_times, harness_times))
    print(f'\nmedians ({args.rows} rows, {args.train_steps} steps): compile {c:.1f} s, LocalDagRunner {l:.1f} s, '
          f'compiled spec via harness {h:.1f} s (ratio harness/local {h / l:.2f})')


if __name__ == '__main__':
    main()
