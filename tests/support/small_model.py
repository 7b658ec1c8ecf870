"""A taxi model trained in process: tf.Transform on Beam, a short Keras fit, the
real export. The same code the Trainer runs, minus TFX's plumbing, so tests of
the exported model can choose their own data (a label that depends on one
feature, say) in seconds instead of a pipeline run."""

import os

import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io, schema_utils

import schemas
from taxi_model import model as model_lib
from taxi_model import preprocessing
from taxi_model.export import export_serving_model
from taxi_model.features import LABEL, RawType, raw_columns
from taxi_model.hyperparameters import Hyperparameters


def typed_rows(header, rows):
    """CSV rows (strings) as dicts of typed values, None where empty."""
    types = raw_columns()
    typed = []
    for row in rows:
        values = {}
        for name, text in zip(header, row):
            if name not in types:
                continue
            if text == '':
                values[name] = None
            elif types[name] is RawType.FLOAT:
                values[name] = float(text)
            elif types[name] is RawType.INT:
                values[name] = int(float(text))
            else:
                values[name] = text
        typed.append(values)
    return typed


def _instance(row, feature_spec):
    out = {}
    for name in feature_spec:
        value = row.get(name)
        if isinstance(value, str):
            value = value.encode()
        out[name] = [] if value is None else [value]
    return out


def _evaluation(output, rows):
    """`rows` (typed dicts) through the Transform graph, as the Trainer reads the eval split."""
    from taxi_model import contract
    from taxi_model.export import Evaluation
    examples = tf.constant([contract.to_tf_example(r).SerializeToString() for r in rows])
    transformed = output.transform_features_layer()(tf.io.parse_example(examples, output.raw_feature_spec()))
    inputs = {name: value.numpy() for name, value in model_lib.model_inputs(transformed).items()}
    return Evaluation(inputs, np.reshape(transformed[LABEL.name].numpy(), [-1]))


def train_and_export(rows, workdir, steps=300, seed=0, evaluation_rows=None):
    """Analyses and transforms `rows` (typed dicts), trains `steps` batches, exports.
    With `evaluation_rows`, the export carries its calibration on them, as the Trainer's on the eval split.
    Returns the SavedModel directory."""
    schema = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    metadata = tft.DatasetMetadata.from_feature_spec(feature_spec)
    transform_dir = os.path.join(workdir, 'transform')
    with tft_beam.Context(temp_dir=os.path.join(workdir, 'tmp')):
        (transformed, _), transform_fn = (
            [_instance(r, feature_spec) for r in rows], metadata
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # TFX's Transform also writes the raw metadata, which the export reads.
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    output = tft.TFTransformOutput(transform_dir)
    columns = {key: np.array([np.asarray(t[key]).reshape(-1)[0] for t in transformed]) for key in transformed[0]}
    inputs = {name: value.numpy() for name, value in model_lib.model_inputs(columns).items()}
    labels = columns[LABEL.name].reshape(-1, 1)
    hp = Hyperparameters()
    tf.keras.utils.set_random_seed(seed)
    model = model_lib.build_keras_model(hp)
    batch = hp.batch_size
    epochs = max(1, steps * batch // len(rows))
    model.fit(inputs, labels, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    export_dir = os.path.join(workdir, 'export')
    baseline = model_lib.mean_representations(model.get_layer(model_lib.ENCODER), [inputs])
    evaluation = _evaluation(output, evaluation_rows) if evaluation_rows else None
    export_serving_model(model, output, export_dir, baseline, schema_path=schemas.CURATED_SCHEMA,
                         evaluation=evaluation)
    return export_dir
