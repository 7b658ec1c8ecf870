"""The Pusher as a TFX component: TFX's own, running our executor (`executor.Executor`)."""

from typing import Optional

from tfx.types.channel import Channel
from tfx.components import Pusher as TfxPusher
from tfx.proto import pusher_pb2
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class Pusher(TfxPusher):
    """TFX's Pusher to a filesystem destination, pushing atomically and sweeping leftovers first.

    `metadata_connection` (foundation.metadata_store.connection_parameter; '' for none) lets the sweep
    tell versions ML Metadata knows from orphans; it travels in `custom_config`, a property TFX's
    Pusher already has, constant per pipeline.
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: Channel, model_blessing: Channel, serving_model_dir: str,
                 metadata_connection: Optional[str] = '', infra_blessing: Optional[Channel] = None):
        super().__init__(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)),
            custom_config={executor.METADATA_CONNECTION: metadata_connection} if metadata_connection else None)
