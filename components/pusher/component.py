"""The Pusher as a TFX component: TFX's own, running our executor (`executor.Executor`)."""

from typing import Optional

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class Pusher(tfx.components.Pusher):
    """TFX's Pusher to a filesystem destination, pushing atomically and sweeping leftovers first.

    `metadata_connection` (foundation.metadata_store.connection_parameter; '' for none) lets the sweep
    tell versions ML Metadata knows from orphans; it travels in `custom_config`, a property TFX's
    Pusher already has, constant per pipeline.
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: tfx.dsl.Channel, model_blessing: tfx.dsl.Channel, serving_model_dir: str,
                 metadata_connection: Optional[str] = '', infra_blessing: Optional[tfx.dsl.Channel] = None):
        super().__init__(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
            custom_config={executor.METADATA_CONNECTION: metadata_connection} if metadata_connection else None)
