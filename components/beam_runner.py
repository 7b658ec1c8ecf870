"""Where a Beam executor's pipeline runs, from the Beam args TFX hands it."""

from typing import Sequence

import apache_beam as beam


def in_process(beam_pipeline_args: Sequence[str]) -> bool:
    """True when Beam runs in this process (the DirectRunner, Beam's default), not on a remote runner."""
    runner = beam.options.pipeline_options.PipelineOptions(list(beam_pipeline_args)).get_all_options()['runner']
    return runner in (None, 'DirectRunner', 'direct')
