"""An edit of the curated schema takes effect on the next run, cache or no cache.

ImportSchemaGen's cache key is the schema file's path; local runs give it a
path named by the content, so an edited file is not mistaken for the old one.
"""

import shutil

import pytest

import schemas
from components.anomalies_gate.gate import DataAnomaliesError
from pipeline import data, local_runner, run_summary
from pipeline.config import PipelineConfig

pytestmark = pytest.mark.e2e


def test_an_edited_schema_takes_effect_on_a_cached_run(tmp_path):
    schema = tmp_path / 'schema.pbtxt'
    shutil.copy(schemas.CURATED_SCHEMA, schema)
    config = PipelineConfig.for_workspace(str(tmp_path / 'workspace'), schema_file=str(schema), train_steps=10,
                                          eval_steps=5)
    data.prepare_sample(config.data_root, rows=500)
    local_runner.run(config, emit_line=lambda line: None)
    # The same file, edited in place: cash is no longer an accepted payment type.
    text = schema.read_text()
    schema.write_text(text.replace('    value: "Cash"\n', '', 1))
    with pytest.raises(DataAnomaliesError, match='payment_type'):
        local_runner.run(config, emit_line=lambda line: None)
    assert run_summary.summarize_latest_run(config, 0.0).state_of('ImportSchemaGen') == 'done'
    # Back to the original content: the original import is found in the cache again.
    schema.write_text(text)
    assert local_runner.run(config, emit_line=lambda line: None).state_of('ImportSchemaGen') == 'cached'
