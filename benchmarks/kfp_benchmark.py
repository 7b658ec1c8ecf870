"""Compile time, and the compiled spec run on the two emulated Kubeflow backends
(open-source KFP 2 recording into ML Metadata over gRPC, and Vertex AI) next
to LocalDagRunner on the same sample (same rows, steps and thresholds).

    .venv/bin/python benchmarks/kfp_benchmark.py [--rows 2000] [--train-steps 200] [--repeats 3]
"""

import argparse
import os
import shutil
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
    sys.path.insert(0, os.path.join(REPO, 'tests'))  # the emulated backends are test infrastructure
    from foundation import metadata_store
    from support.kubeflow.metadata_service import MetadataService
    from support.kubeflow.open_source import OpenSourceKfpBackend
    from support.kubeflow.run import KfpRun, image_environment
    from support.kubeflow.vertex import VertexBackend

    def open_source_run(spec, root, tmp):
        with MetadataService(os.path.join(tmp, 'metadata.sqlite')) as service:
            backend = OpenSourceKfpBackend(metadata_store.connect(grpc_address=service.address))
            KfpRun(spec, root, backend, env=image_environment(os.path.join(REPO, 'Dockerfile'))).run()

    def vertex_run(spec, root):
        KfpRun(spec, root, VertexBackend(), env=image_environment(os.path.join(REPO, 'Dockerfile'))).run()

    compile_times, local_times, open_source_times, vertex_times = [], [], [], []
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
            open_source_times.append(timed(lambda: open_source_run(spec, os.path.join(tmp, 'oss_root'), tmp)))
            # The spec pushes to one directory: each backend's run starts with nothing pushed (no baseline).
            shutil.rmtree(os.path.join(tmp, 'kfp_serving'))
            vertex_times.append(timed(lambda: vertex_run(spec, os.path.join(tmp, 'vertex_root'))))
            print(f'[{i + 1}/{args.repeats}] compile {compile_times[-1]:5.1f} s   '
                  f'LocalDagRunner {local_times[-1]:5.1f} s   open-source KFP {open_source_times[-1]:5.1f} s   '
                  f'Vertex AI {vertex_times[-1]:5.1f} s', flush=True)

    c, l, o, v = (statistics.median(x) for x in (compile_times, local_times, open_source_times, vertex_times))
    print(f'\nmedians ({args.rows} rows, {args.train_steps} steps): compile {c:.1f} s, LocalDagRunner {l:.1f} s, '
          f'open-source KFP {o:.1f} s (ratio to local {o / l:.2f}), '
          f'Vertex AI {v:.1f} s (ratio {v / l:.2f})')


if __name__ == '__main__':
    main()
