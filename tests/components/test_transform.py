"""The in-process Transform executor writes the artifacts TFX's Transform executor writes."""

import collections
import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.transform import executor as tfx_transform_executor
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts

import schemas
from components import transform
from taxi_model import contract, preprocessing

pytestmark = pytest.mark.component


PROPERTIES = {'preprocessing_fn': 'taxi_model.preprocessing.preprocessing_fn',
              'disable_statistics': 1, 'force_tf_compat_v1': 1}


def _run(executor_class, examples, out, properties=None, beam_args=()):
    schema = standard_artifacts.Schema()
    schema.uri = str(out / 'schema')
    os.makedirs(schema.uri)
    shutil.copy(schemas.CURATED_SCHEMA, schema.uri)
    graph, transformed = standard_artifacts.TransformGraph(), standard_artifacts.Examples()
    graph.uri, transformed.uri = str(out / 'graph'), str(out / 'examples')
    outputs = {'transform_graph': [graph], 'transformed_examples': [transformed]}
    if properties and not properties.get('disable_statistics'):
        for key in ('pre_transform_schema', 'pre_transform_stats', 'post_transform_schema',
                    'post_transform_stats', 'post_transform_anomalies'):
            artifact = standard_artifacts.Schema() if key.endswith('schema') else standard_artifacts.ExampleStatistics()
            artifact.uri = str(out / key)
            outputs[key] = [artifact]
    executor_class(BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args))).Do(
        {'examples': [examples], 'schema': [schema]}, outputs, dict(properties or PROPERTIES))
    return graph, transformed


def _channel(artifact_type):
    from tfx.types import channel
    return channel.Channel(type=artifact_type)


def _records(pattern):
    files = glob.glob(pattern)
    return [r for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4096)
            for r in batch.numpy().tolist()]


def _multiset(records):
    return collections.Counter(tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records)


@pytest.fixture(scope='module')
def both(taxi_examples, tmp_path_factory):
    root = tmp_path_factory.mktemp('transform-runs')
    return (_run(transform.Executor, taxi_examples, root / 'ours'),
            _run(tfx_transform_executor.Executor, taxi_examples, root / 'theirs'))


def test_the_same_transform_graph_as_tfx(taxi_examples, both):
    (ours, _), (theirs, _) = both
    ours_out, theirs_out = tft.TFTransformOutput(ours.uri), tft.TFTransformOutput(theirs.uri)
    assert ours_out.transformed_metadata.schema == theirs_out.transformed_metadata.schema
    assert ours_out.raw_metadata.schema == theirs_out.raw_metadata.schema
    assert sorted(os.listdir(ours_out.transform_savedmodel_dir)) == sorted(
        os.listdir(theirs_out.transform_savedmodel_dir))
    for vocabulary in ('company', 'payment_type'):
        with open(ours_out.vocabulary_file_by_name(vocabulary), 'rb') as a, \
                open(theirs_out.vocabulary_file_by_name(vocabulary), 'rb') as b:
            assert a.read() == b.read()
    raw = tf.constant(_records(os.path.join(artifact_utils.get_split_uri([taxi_examples], 'train'), '*')))
    features = tf.io.parse_example(raw, ours_out.raw_feature_spec())
    mine, tfx = ours_out.transform_features_layer()(features), theirs_out.transform_features_layer()(features)
    assert sorted(mine) == sorted(tfx)
    # The outlier threshold is a quantile sketch's answer, which depends on how the rows were batched
    # (TFX's batches grow with Beam's timing): both must flag the calibrated share of the training
    # split within the sketch's rank error.
    scores = tfx[contract.OUTLIER_SCORE].numpy()
    for outputs in (mine, tfx):
        flagged = float(np.mean(scores > outputs[contract.OUTLIER_THRESHOLD].numpy()[0]))
        assert abs(flagged - preprocessing.OUTLIER_SHARE) <= 2 * preprocessing._QUANTILE_EPSILON
    for name in set(mine) - {contract.OUTLIER_THRESHOLD}:
        a, b = mine[name].numpy(), tfx[name].numpy()
        if a.dtype.kind == 'f':
            # float32 means and variances summed over other batches. The outlier score also z-scores
            # latitudes and longitudes (a spread of ~0.03 around 41.9), whose variances keep fewer
            # digits, so it agrees to ~1e-3; the scaled features to float32 rounding.
            tolerance = 2e-3 if name == contract.OUTLIER_SCORE else 1e-5
            np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_same_transformed_examples_as_tfx_from_the_same_graph(taxi_examples, both, tmp_path):
    """Materialisation alone: TFX's graph, our writer, TFX's examples byte for byte (up to feature order)."""
    (_, ours), (theirs_graph, theirs) = both
    writer = transform.TransformedWriter(theirs_graph.uri)
    assert ours.split_names == theirs.split_names
    for split in artifact_utils.decode_split_names(theirs.split_names):
        path = str(tmp_path / split / transform.SHARD_NAME)
        rows = writer.write(os.path.join(artifact_utils.get_split_uri([taxi_examples], split), '*'), path)
        expected = _records(os.path.join(artifact_utils.get_split_uri([theirs], split), '*'))
        assert rows == len(expected) > 1000
        assert _multiset(_records(path)) == _multiset(expected)
        assert os.listdir(artifact_utils.get_split_uri([ours], split)) == [transform.SHARD_NAME]
        assert len(_records(os.path.join(artifact_utils.get_split_uri([ours], split), '*'))) == rows


def test_the_artifact_reads_as_tfx_trainer_reads_it(both):
    (graph, transformed), _ = both
    spec = tft.TFTransformOutput(graph.uri).transformed_feature_spec()
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([transformed], 'train'), '*'))
    batch = next(iter(tf.data.TFRecordDataset(files, compression_type='GZIP').batch(512)))
    parsed = tf.io.parse_example(batch, spec)
    assert set(parsed) == set(spec) and all(int(tf.shape(v)[0]) == 512 for v in parsed.values())
    # No temporary or partial files left behind.
    assert not [f for f in glob.glob(os.path.join(transformed.uri, '**'), recursive=True) if 'partial' in f]
    assert not os.path.exists(os.path.join(graph.uri, '.temp_path'))


def test_without_materialisation_the_graph_alone_in_process(taxi_examples, both, tmp_path, monkeypatch):
    """materialize=False (the pipeline's): TFX's component declares no transformed_examples; the in-process
    analysis still runs, writes the same graph, and no examples."""
    def refuse(*args, **kwargs):
        raise AssertionError("TFX's executor ran")
    monkeypatch.setattr(tfx_transform_executor.Executor, 'Do', refuse)
    assert 'transformed_examples' not in transform.Transform(
        examples=_channel(standard_artifacts.Examples), schema=_channel(standard_artifacts.Schema),
        preprocessing_fn=PROPERTIES['preprocessing_fn'], materialize=False).outputs
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(tmp_path / 'graph')
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / 'schema')
    os.makedirs(schema.uri)
    shutil.copy(schemas.CURATED_SCHEMA, schema.uri)
    transform.Executor(BaseBeamExecutor.Context(beam_pipeline_args=[])).Do(
        {'examples': [taxi_examples], 'schema': [schema]}, {'transform_graph': [graph]}, dict(PROPERTIES))
    (materialised, _), _ = both
    alone, before = tft.TFTransformOutput(graph.uri), tft.TFTransformOutput(materialised.uri)
    assert alone.transformed_metadata.schema == before.transformed_metadata.schema
    with open(alone.vocabulary_file_by_name('company'), 'rb') as a, \
            open(before.vocabulary_file_by_name('company'), 'rb') as b:
        assert a.read() == b.read()
    assert sorted(os.listdir(tmp_path)) == ['graph', 'schema']


def test_the_trainer_reads_raw_examples_through_the_graph_as_the_materialised_ones(taxi_examples, both):
    """What taxi_model.inputs gives the Trainer and the Tuner (ExampleGen's examples through the graph)
    equals what the materialised examples would have given, batch for batch."""
    from tfx.components.util import tfxio_utils
    from tfx_bsl.public import tfxio
    from taxi_model.features import LABEL
    from taxi_model.inputs import TransformedReader
    from taxi_model.model import model_inputs
    (graph, transformed), _ = both
    output = tft.TFTransformOutput(graph.uri)
    options = tfxio.TensorFlowDatasetOptions(batch_size=256, shuffle=False, num_epochs=1)
    reader = TransformedReader(type('Accessor', (), {'tf_dataset_factory': staticmethod(
        tfxio_utils.get_tf_dataset_factory_from_artifact([taxi_examples], []))}), output)
    raw = reader.batches([os.path.join(artifact_utils.get_split_uri([taxi_examples], 'eval'), '*')], options)
    materialised = tfxio_utils.get_tf_dataset_factory_from_artifact([transformed], [])(
        [os.path.join(artifact_utils.get_split_uri([transformed], 'eval'), '*')],
        tfxio.TensorFlowDatasetOptions(batch_size=256, shuffle=False, num_epochs=1, label_key=LABEL.name),
        output.transformed_metadata.schema)
    batches = 0
    for (inputs, label), (features, expected_label) in zip(raw, materialised, strict=True):
        expected = model_inputs(features)
        assert sorted(inputs) == sorted(expected)
        for name in expected:
            np.testing.assert_array_equal(inputs[name].numpy(), expected[name].numpy(), err_msg=name)
        np.testing.assert_array_equal(label.numpy(), expected_label.numpy())
        batches += 1
    assert batches > 3
    with pytest.raises(ValueError, match='the label is an output of the transform graph'):
        reader.batches([], tfxio.TensorFlowDatasetOptions(batch_size=1, label_key=LABEL.name))


def test_a_remote_runner_or_an_unmirrored_config_gets_tfx_executor(taxi_examples, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('the in-process path ran')
    monkeypatch.setattr(transform.TransformedWriter, 'write', refuse)
    # Statistics on: TFX's executor, which writes pre- and post-transform statistics.
    graph, transformed = _run(transform.Executor, taxi_examples, tmp_path, {**PROPERTIES, 'disable_statistics': 0})
    assert glob.glob(str(tmp_path / 'post_transform_stats' / '*'))
    assert _records(os.path.join(artifact_utils.get_split_uri([transformed], 'eval'), '*'))
    assert not transform.beam_runner.in_process(['--runner=DataflowRunner'])


def test_a_failed_write_leaves_no_file(both, taxi_examples, tmp_path, monkeypatch):
    (graph, _), _ = both
    writer = transform.TransformedWriter(graph.uri)
    batches = writer._encoded

    def failing(pattern):
        yield next(batches(pattern))
        raise OSError('disk full')
    monkeypatch.setattr(writer, '_encoded', failing)
    path = tmp_path / 'Split-eval' / transform.SHARD_NAME
    with pytest.raises(OSError, match='disk full'):
        writer.write(os.path.join(artifact_utils.get_split_uri([taxi_examples], 'eval'), '*'), str(path))
    assert os.listdir(path.parent) == []
