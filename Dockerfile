# The pipeline image: TFX 1.16 with this project installed, so every Kubeflow
# task (and Dataflow worker) imports user code by module path, e.g.
# taxi_model.preprocessing.preprocessing_fn, exactly as tested locally.
FROM tensorflow/tfx:1.16.0

# tf.Transform and TFMA need Keras 2; TF 2.16's tf.keras is Keras 3 unless this
# is set before TensorFlow loads. Set here, every task process gets it.
ENV TF_USE_LEGACY_KERAS=1
# What code this image holds, recorded on every model it trains (pipeline/code_version.py):
# a container has no .git to ask. Cloud Build passes the commit and the image's tag.
ARG GIT_COMMIT=""
ARG IMAGE=""
ENV TAXI_CODE_COMMIT=${GIT_COMMIT} TAXI_CODE_IMAGE=${IMAGE}

WORKDIR /pipeline
# Dependencies come from the TFX image; install only this package on top, so
# the image's tested TFX/TensorFlow stack is not re-resolved. Transform and
# Trainer tasks need taxi_model/, components/ and schemas/; pipeline/, cli/ and
# serving/ are for the operator's commands run from the same image.
COPY setup.py pyproject.toml README.md ./
COPY foundation/ foundation/
COPY taxi_model/ taxi_model/
COPY components/ components/
COPY schemas/ schemas/
COPY pipeline/ pipeline/
COPY serving/ serving/
COPY monitoring/ monitoring/
COPY scheduler/ scheduler/
COPY release/ release/
COPY provenance/ provenance/
COPY reports/ reports/
COPY cli/ cli/
# The compiled spec, for the trigger CronJob: run parameters are checked against it.
COPY kfp/ kfp/
# The operator's commands need two libraries the TFX image lacks: the scheduler's
# and the metrics client (pinned as in constraints.txt).
RUN pip install --no-cache-dir APScheduler==3.10.4 prometheus_client==0.26.0
# pyproject.toml: built as a wheel (PEP 660), with a plain console script (docs/installing.md).
RUN pip install --no-cache-dir --no-deps -e /pipeline \
    && python -c "import taxi_model.training, taxi_model.preprocessing, components.trainer.component, schemas; print(schemas.CURATED_SCHEMA)"

# KubeflowV2DagRunner sets the command per task; this is for running by hand.
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
