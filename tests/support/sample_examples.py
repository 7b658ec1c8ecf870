"""The taxi sample as our ExampleGen writes it, for tests that need Examples artifacts."""

from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import csv_examples
from pipeline import data


def examples_of_sample(root, rows=None):
    """The taxi sample (its first `rows` rows, or all) through ExampleGen under `root`: an Examples
    artifact with train (2/3) and eval splits."""
    data.prepare_sample(str(root / 'data'), rows=rows)
    output = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=2),
        example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=1)]))
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root / 'examples')
    csv_examples.Executor(BaseBeamExecutor.Context(beam_pipeline_args=[])).Do({}, {'examples': [artifact]}, {
        'input_base': str(root / 'data'),
        'input_config': proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='span', pattern='span-1/*')])),
        'output_config': proto_utils.proto_to_json(output),
        'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
        'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP})
    return artifact
