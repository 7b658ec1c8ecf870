import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
import pytest

from cli import main as cli
from pipeline import schema_review
from pipeline.schema_review import Difference

from support.samples import write_csv

pytestmark = pytest.mark.unit


def test_differences_name_missing_new_and_retyped_features():
    curated = tfdv.load_schema_text(schemas.CURATED_SCHEMA)
    draft = schema_pb2.Schema()
    draft.CopyFrom(curated)
    del draft.feature[[f.name for f in draft.feature].index('company')]
    tfdv.get_feature(draft, 'fare').type = schema_pb2.BYTES
    draft.feature.add(name='surge', type=schema_pb2.FLOAT)

    found = schema_review.differences(curated, draft)

    assert set(found) == {Difference('company', 'feature', 'present', 'absent'),
                          Difference('surge', 'feature', 'absent', 'present'),
                          Difference('fare', 'type', 'FLOAT', 'BYTES')}
    assert schema_review.differences(curated, curated) == []


def test_schema_draft_command_writes_a_draft_and_lists_differences(tmp_path, taxi_rows, capsys):
    header, rows = taxi_rows
    dropped = header.index('company')
    write_csv(str(tmp_path / 'data' / 'span-1' / 'data.csv'), header[:dropped] + header[dropped + 1:],
              [r[:dropped] + r[dropped + 1:] for r in rows[:500]])
    output = tmp_path / 'draft' / 'schema.pbtxt'

    code = cli.main(['schema-draft', '--data-root', str(tmp_path / 'data'), '--output', str(output)])

    assert code == cli.EXIT_OK
    draft = tfdv.load_schema_text(str(output))
    assert 'company' not in {f.name for f in draft.feature}
    listed = capsys.readouterr().out.split('Differences from the curated schema')[1]
    assert str(Difference('company', 'feature', 'present', 'absent')) in listed
