# The pipeline image: TFX 1.16 with this project installed, so every Kubeflow
# task (and Dataflow worker) imports user code by module path, e.g.
# pipeline.preprocessing.preprocessing_fn, exactly as tested locally.
FROM tensorflow/tfx:1.16.0

WORKDIR /pipeline
# Dependencies come from the TFX image; install only this package on top, so
# the image's tested TFX/TensorFlow stack is not re-resolved.
COPY setup.py README.md ./
COPY pipeline/ pipeline/
COPY components/ components/
COPY schemas/ schemas/
COPY serving/ serving/
RUN pip install --no-cache-dir --no-deps -e /pipeline \
    && python -c "import pipeline.pipeline, components.anomalies_gate, schemas; print(schemas.CURATED_SCHEMA)"

# KubeflowV2DagRunner sets the command per task; this is for running by hand.
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
