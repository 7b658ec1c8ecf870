"""Draft a schema from data with TFDV and compare it with the curated one.

The curated schema is a reviewed contract; data changes should reach it
through a person reading these differences, not by overwriting it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import List

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas

# Feature fields a reviewer cares about; the rest (annotations, ids) is noise.
_COMPARED_FIELDS = ('type', 'presence', 'value_count', 'shape', 'int_domain', 'float_domain',
                    'string_domain', 'domain')


def infer_draft(csv_dir: str) -> schema_pb2.Schema:
    with tempfile.TemporaryDirectory() as scratch:  # TFDV would leave its output in /tmp
        stats = tfdv.generate_statistics_from_csv(data_location=os.path.join(csv_dir, '*.csv'),
                                                  output_path=os.path.join(scratch, 'statistics.tfrecord'))
    return tfdv.infer_schema(stats, infer_feature_shape=True)


def _field_text(feature: schema_pb2.Feature, field: str) -> str:
    if field == 'type':
        return schema_pb2.FeatureType.Name(feature.type)
    if not feature.HasField(field):
        return '-'
    return ' '.join(str(getattr(feature, field)).split())


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way the draft departs from the curated schema. `field` is 'feature'
    when the whole feature is only on one side ('present' / 'absent')."""

    feature: str
    field: str
    curated: str
    draft: str

    def __str__(self) -> str:
        if self.field == 'feature':
            return (f'{self.feature}: in the curated schema, not in the data' if self.draft == 'absent' else
                    f'{self.feature}: in the data, not in the curated schema')
        return f'{self.feature}.{self.field}: curated {self.curated} | draft {self.draft}'


def differences(curated: schema_pb2.Schema, draft: schema_pb2.Schema) -> List[Difference]:
    """Per-feature differences on the fields a reviewer cares about; empty when the two agree."""
    curated_by_name = {f.name: f for f in curated.feature}
    draft_by_name = {f.name: f for f in draft.feature}
    found = []
    for name in sorted(set(curated_by_name) | set(draft_by_name)):
        if name not in draft_by_name or name not in curated_by_name:
            found.append(Difference(name, 'feature', 'present' if name in curated_by_name else 'absent',
                                    'present' if name in draft_by_name else 'absent'))
            continue
        for field in _COMPARED_FIELDS:
            ours, theirs = _field_text(curated_by_name[name], field), _field_text(draft_by_name[name], field)
            if ours != theirs:
                found.append(Difference(name, field, ours, theirs))
    return found


def write_draft(csv_dir: str, output_path: str) -> List[Difference]:
    draft = infer_draft(csv_dir)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    tfdv.write_schema_text(draft, output_path)
    return differences(tfdv.load_schema_text(schemas.CURATED_SCHEMA), draft)
