"""Wall time and peak memory of a full pipeline run, next to TFX's own example.

Runs, back to back and alternating, (a) this project's pipeline on the 15k-row
taxi sample with default settings on a fresh workspace, then a fully cached
re-run of it, and (b) TFX's `chicago_taxi_pipeline/taxi_pipeline_native_keras.py`
(BeamDagRunner, 1000 train steps) on the same data, each in its own process.
Prints every measurement, then medians and ratios. Beside wall time and peak
memory, the CPU seconds each run's process tree used and so the cores it kept
busy on average: TFX's example runs Beam with a worker process per core
(`--direct_running_mode=multi_processing`), this pipeline runs Beam in process.

    .venv/bin/python benchmarks/pipeline_benchmark.py [--repeats 3]
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import psutil

# This process only reads results back; keep TensorFlow's and Google's chatter out of the figures.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.simplefilter('ignore')

VENV_BIN = os.path.dirname(sys.executable)


def children_cpu_seconds() -> float:
    """CPU seconds (user and system) of this process's children that have ended and been waited for, and
    of theirs that they waited for: after `measure`, the whole tree's to its end (the kernel's count, where
    `measure`'s samples stop up to a fifth of a second before it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd, env=None, cwd=None, cpu=None):
    """(wall seconds, peak RSS of the whole process tree in MiB, exit code). Given a list as `cpu`, appends
    (time since the epoch, CPU seconds the tree has used so far) at every look, five a second."""
    # Logs go to a file: a pipe that nobody drains fills up and blocks the child.
    log = tempfile.TemporaryFile(mode='w+')
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            if cpu is not None:
                times = [p.cpu_times() for p in tree if p.is_running()]
                cpu.append((time.time(), sum(t.user + t.system + t.children_user + t.children_system
                                             for t in times)))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        log.seek(0)
        sys.stderr.write(log.read()[-3000:])
    log.close()
    return wall, peak / 2**20, proc.returncode


def with_cpu(run, *args):
    """`run(*args)`'s (wall, peak RSS, exit code) and the CPU seconds its process tree used."""
    before = children_cpu_seconds()
    wall, rss, code = run(*args)
    return wall, rss, code, children_cpu_seconds() - before


def run_ours(workspace):
    return measure([os.path.join(VENV_BIN, 'taxi-pipeline'), 'run', '--workspace', workspace])


def run_reference(home):
    """TFX's example reads and writes under $HOME/taxi and $HOME/tfx."""
    import tfx
    example_dir = os.path.join(os.path.dirname(tfx.__file__), 'examples', 'chicago_taxi_pipeline')
    taxi = os.path.join(home, 'taxi')
    os.makedirs(os.path.join(taxi, 'data', 'simple'), exist_ok=True)
    shutil.copy(os.path.join(example_dir, 'data', 'simple', 'data.csv'), os.path.join(taxi, 'data', 'simple'))
    for name in ('taxi_pipeline_native_keras.py', 'taxi_utils_native_keras.py'):
        shutil.copy(os.path.join(example_dir, name), taxi)
    # Its Beam args make every TFX Beam executor build a 52 MB sdist of TFX in the temp directory, never
    # deleted (and its user-code wheels): kept in this run's home, which is deleted after it.
    os.makedirs(os.path.join(home, 'tmp'), exist_ok=True)
    env = dict(os.environ, HOME=home, TMPDIR=os.path.join(home, 'tmp'), TF_CPP_MIN_LOG_LEVEL='3')
    return measure([sys.executable, os.path.join(taxi, 'taxi_pipeline_native_keras.py')], env=env, cwd=taxi)


def eval_metrics(workspace):
    from pipeline import run_summary
    from pipeline.config import PipelineConfig
    result = run_summary.summarize_latest_run(PipelineConfig.for_workspace(workspace), wall_seconds=0)
    return result.metrics, result.blessed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--skip-reference', action='store_true')
    args = parser.parse_args()

    results = {'ours': [], 'ours_cached': [], 'reference': []}

    def show(key, label, i, wall, rss, code, cpu):
        print(f'[{i + 1}/{args.repeats}] {label:<15} {wall:6.1f} s  {rss:7.0f} MiB  {cpu:6.1f} CPU s '
              f'({cpu / wall:.2f} cores)  exit {code}', flush=True)
        results[key].append((wall, rss, cpu))

    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as ours, tempfile.TemporaryDirectory() as home:
            show('ours', 'ours (fresh):', i, *with_cpu(run_ours, ours))
            metrics, blessed = eval_metrics(ours)
            show('ours_cached', 'ours (cached):', i, *with_cpu(run_ours, ours))
            print(f'           eval: auc={metrics.get("auc", float("nan")):.4f} '
                  f'accuracy={metrics.get("binary_accuracy", float("nan")):.4f} blessed={blessed}', flush=True)
            if not args.skip_reference:
                show('reference', 'TFX example:', i, *with_cpu(run_reference, home))

    print('\nmedians')
    med = {k: tuple(statistics.median(run[i] for run in v) for i in range(3)) for k, v in results.items() if v}
    for key, label in (('ours', 'ours, fresh run'), ('ours_cached', 'ours, cached re-run'),
                       ('reference', 'TFX native-Keras example')):
        if key in med:
            print(f'  {label:<26} {med[key][0]:6.1f} s  {med[key][1]:7.0f} MiB peak RSS  {med[key][2]:6.1f} CPU s')
    if 'reference' in med:
        print(f'  wall ratio ours/TFX: {med["ours"][0] / med["reference"][0]:.2f}   '
              f'memory ratio: {med["ours"][1] / med["reference"][1]:.2f}   '
              f'CPU ratio: {med["ours"][2] / med["reference"][2]:.2f}')


if __name__ == '__main__':
    main()
