"""TF Serving config protos that tensorflow-serving-api does not ship.

The package has model_server_config_pb2 but neither monitoring_config.proto
(MonitoringConfig) nor session_bundle_config.proto (BatchingParameters). They
are transcribed here from tensorflow/serving 2.16.1 (names, numbers, types;
BatchingParameters fields 1-7, the ones in every release), so
`text_format.Parse` reads the deployment's files as strictly as the server:
unknown fields, wrong types, and `max_batch_size: 256` where an Int64Value is
needed are all rejected. The embedded server reads its batching file with it.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2


def _field(name, number, type_, type_name=None, repeated=False):
    f = descriptor_pb2.FieldDescriptorProto(name=name, number=number, type=type_, json_name=name)
    f.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name
    return f


def _message_classes():
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name='tensorflow_serving/config/monitoring_config.proto', package='tensorflow.serving', syntax='proto3')
    prometheus = monitoring.message_type.add(name='PrometheusConfig')
    prometheus.field.extend([_field('enable', 1, F.TYPE_BOOL), _field('path', 2, F.TYPE_STRING)])
    monitoring.message_type.add(name='MonitoringConfig').field.append(
        _field('prometheus_config', 1, F.TYPE_MESSAGE, '.tensorflow.serving.PrometheusConfig'))
    pool.Add(monitoring)

    batching = descriptor_pb2.FileDescriptorProto(
        name='tensorflow_serving/servables/tensorflow/session_bundle_config.proto', package='tensorflow.serving',
        syntax='proto3', dependency=['google/protobuf/wrappers.proto'])
    int64 = '.google.protobuf.Int64Value'
    batching.message_type.add(name='BatchingParameters').field.extend([
        _field('max_batch_size', 1, F.TYPE_MESSAGE, int64),
        _field('batch_timeout_micros', 2, F.TYPE_MESSAGE, int64),
        _field('max_enqueued_batches', 3, F.TYPE_MESSAGE, int64),
        _field('num_batch_threads', 4, F.TYPE_MESSAGE, int64),
        _field('thread_pool_name', 5, F.TYPE_MESSAGE, '.google.protobuf.StringValue'),
        _field('allowed_batch_sizes', 6, F.TYPE_INT64, repeated=True),
        _field('pad_variable_length_inputs', 7, F.TYPE_BOOL),
    ])
    pool.Add(batching)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName('tensorflow.serving.MonitoringConfig')),
            message_factory.GetMessageClass(pool.FindMessageTypeByName('tensorflow.serving.BatchingParameters')))


MonitoringConfig, BatchingParameters = _message_classes()


def parse_text(text: str, message, source: str):
    """Parses a text-format proto into `message`; ValueError naming `source` if it is not one."""
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ValueError(f'{source}: not a {message.DESCRIPTOR.name} text proto: {e}') from None


def read_text(path: str, message):
    """`message` parsed from the text-format file at `path`."""
    with open(path) as f:
        return parse_text(f.read(), message, path)
