"""What the Trainer exports besides the model: TF Serving's warm-up records and
the declared missing-value markers, both read back as a server reads them."""

import json
import os

from serving.servable import read_missing_values, read_signature_defs, read_warmup_requests
from taxi_model import contract


def test_pushed_model_carries_warmup_requests_for_every_client_signature(first_run):
    pushed = first_run[1].pushed_to
    replayed = sorted(getattr(log, log.WhichOneof('log_type')).request.model_spec.signature_name
                      for log in read_warmup_requests(pushed))
    assert replayed == sorted(contract.CLIENT_SIGNATURES)


def test_signatures_carry_tf_servings_method_names(first_run):
    signature_defs = read_signature_defs(first_run[1].pushed_to)
    for name, method in contract.CLIENT_SIGNATURES.items():
        assert signature_defs[name].method_name == method, name


def test_missing_value_markers_are_declared_for_every_raw_input(first_run):
    pushed = first_run[1].pushed_to
    declared = read_missing_values(pushed)
    signature_defs = read_signature_defs(pushed)
    assert set(declared) == {contract.PREDICT_RAW}
    assert set(declared[contract.PREDICT_RAW]) == set(signature_defs[contract.PREDICT_RAW].inputs)
    with open(os.path.join(pushed, contract.MISSING_VALUES_FILE)) as f:
        assert json.load(f) == declared
