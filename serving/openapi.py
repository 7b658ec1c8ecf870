"""An OpenAPI 3.1 document of the REST API for one served model version, from its signatures.

TF Serving publishes no machine-readable description of its REST API; a client of a given
model has to read the metadata call's SignatureDefs and the REST docs. This derives one:
every signature's request and response bodies, typed from its inputs' and outputs' dtypes
and shapes, in the row (`instances`) and columnar (`inputs`) formats, plus Classify and
Regress for the signatures those calls accept (serving/servable.py `_examples_signature`'s
rules). Served at `GET /v1/models/{name}[/versions/{v} | /labels/{l}]/openapi.json`
(not a TF Serving path; the server's and the gateway's own).

Model-agnostic: it knows a model only by its SignatureDefs.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
_INIT_OP = '__saved_model_init_op'
_JSON = 'application/json'


def _value_schema(dtype: int, name: str) -> Dict[str, Any]:
    dtype = tf.as_dtype(dtype)
    if dtype == tf.string:
        # Text, or bytes as {"b64": ...} (TF Serving writes outputs named *_bytes that way).
        b64 = {'type': 'object', 'properties': {'b64': {'type': 'string', 'contentEncoding': 'base64'}},
               'required': ['b64'], 'additionalProperties': False}
        return b64 if name.endswith('_bytes') else {'anyOf': [{'type': 'string'}, b64]}
    if dtype.is_bool:
        return {'type': 'boolean'}
    if dtype.is_integer:
        return {'type': 'integer'}
    if dtype.is_floating:
        # JSON has no NaN: TF Serving writes NaN and Infinity as bare words only if asked; numbers here.
        return {'type': 'number'}
    return {'description': f'{dtype.name}: not expressible in JSON'}


def _tensor_schema(info, dims: Optional[list], name: str) -> Dict[str, Any]:
    """Nested arrays for `dims` (None: unknown rank, any nesting the graph accepts)."""
    value = _value_schema(info.dtype, name)
    if dims is None:
        return {'anyOf': [value, {'type': 'array'}], 'description': 'shape unknown: the graph decides'}
    schema = value
    for size in reversed(dims):
        schema = {'type': 'array', 'items': schema}
        if size >= 0:
            schema.update(minItems=size, maxItems=size)
    return schema


def _dims(info) -> Optional[list]:
    return None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]


def _row_schema(tensors: Mapping[str, Any]) -> Dict[str, Any]:
    """One instance (row format): each tensor without its batch dimension."""
    def one(name, info):
        dims = _dims(info)
        return _tensor_schema(info, dims[1:] if dims else None if dims is None else [], name)

    if len(tensors) == 1:
        ((name, info),) = tensors.items()
        return one(name, info)
    return {'type': 'object', 'properties': {n: one(n, i) for n, i in sorted(tensors.items())},
            'required': sorted(tensors), 'additionalProperties': False}


def _columns_schema(tensors: Mapping[str, Any]) -> Dict[str, Any]:
    def whole(name, info):
        return _tensor_schema(info, _dims(info), name)

    if len(tensors) == 1:
        ((name, info),) = tensors.items()
        return whole(name, info)
    return {'type': 'object', 'properties': {n: whole(n, i) for n, i in sorted(tensors.items())},
            'required': sorted(tensors), 'additionalProperties': False}


def _signature_field(name: str) -> Dict[str, Any]:
    return {'type': 'string', 'const': name} if name != DEFAULT_SIGNATURE else \
        {'type': 'string', 'enum': ['', DEFAULT_SIGNATURE]}


def _examples_kind(signature) -> Optional[str]:
    """'classify' or 'regress' if that call accepts the signature (TF Serving's rules, method-name check off)
    and can run it: the input must take the serialized tf.Examples the call feeds it."""
    if len(signature.inputs) != 1 or 'inputs' not in signature.inputs or \
            tf.as_dtype(signature.inputs['inputs'].dtype) != tf.string:
        return None
    if 1 <= len(signature.outputs) <= 2 and {'classes', 'scores'} & set(signature.outputs):
        return 'classify'
    if set(signature.outputs) == {'outputs'}:
        return 'regress'
    return None


_FEATURE = {'anyOf': [{'type': 'number'}, {'type': 'string'}, {'type': 'object', 'required': ['b64']},
                      {'type': 'array', 'items': {'anyOf': [{'type': 'number'}, {'type': 'string'},
                                                             {'type': 'object', 'required': ['b64']}]}}]}
_EXAMPLE = {'type': 'object', 'additionalProperties': _FEATURE,
            'description': 'a tf.Example: integers become int64_list, other numbers float_list, strings bytes_list'}


def _ref(name: str) -> Dict[str, str]:
    return {'$ref': f'#/components/schemas/{name}'}


def _body(schema_name: str) -> Dict[str, Any]:
    return {'content': {_JSON: {'schema': _ref(schema_name)}}}


def document(model_name: str, version: int, signature_defs: Mapping[str, Any]) -> Dict[str, Any]:
    """The OpenAPI 3.1 document for `model_name` as `version`'s signatures define it."""
    schemas: Dict[str, Any] = {
        'Error': {'type': 'object', 'properties': {'error': {'type': 'string'}}, 'required': ['error']},
        'Example': _EXAMPLE,
    }
    predict_requests, predict_responses = [], []
    examples_calls: Dict[str, list] = {'classify': [], 'regress': []}
    for name in sorted(signature_defs):
        signature = signature_defs[name]
        if name == _INIT_OP or not signature.inputs or not signature.outputs:
            continue
        key = ''.join(c if c.isalnum() else '_' for c in name)
        signature_field = _signature_field(name)
        schemas[f'{key}.PredictRows'] = {
            'type': 'object', 'title': f'{name}: row format',
            'properties': {'signature_name': signature_field,
                           'instances': {'type': 'array', 'minItems': 1, 'items': _row_schema(signature.inputs)}},
            'required': ['instances'] + ([] if name == DEFAULT_SIGNATURE else ['signature_name']),
            'additionalProperties': False}
        schemas[f'{key}.PredictColumns'] = {
            'type': 'object', 'title': f'{name}: columnar format',
            'properties': {'signature_name': signature_field, 'inputs': _columns_schema(signature.inputs)},
            'required': ['inputs'] + ([] if name == DEFAULT_SIGNATURE else ['signature_name']),
            'additionalProperties': False}
        schemas[f'{key}.Predictions'] = {
            'type': 'object', 'title': f'{name}: answer to the row format',
            'properties': {'predictions': {'type': 'array', 'items': _row_schema(signature.outputs)}},
            'required': ['predictions'], 'additionalProperties': False}
        schemas[f'{key}.Outputs'] = {
            'type': 'object', 'title': f'{name}: answer to the columnar format',
            'properties': {'outputs': _columns_schema(signature.outputs)},
            'required': ['outputs'], 'additionalProperties': False}
        predict_requests += [_ref(f'{key}.PredictRows'), _ref(f'{key}.PredictColumns')]
        predict_responses += [_ref(f'{key}.Predictions'), _ref(f'{key}.Outputs')]
        kind = _examples_kind(signature)
        if kind:
            examples_calls[kind].append(name)
    schemas['PredictRequest'] = {'oneOf': predict_requests} if predict_requests else {'not': {}}
    schemas['PredictResponse'] = {'anyOf': predict_responses} if predict_responses else {'not': {}}
    label_and_score = {'type': 'array', 'prefixItems': [{'type': 'string'}, {'type': 'number'}], 'minItems': 2,
                       'maxItems': 2, 'description': '[label, score]; a score-only signature labels ""'}
    schemas['ClassifyResponse'] = {
        'type': 'object', 'required': ['results'],
        'properties': {'results': {'type': 'array', 'items': {'type': 'array', 'items': label_and_score}}}}
    schemas['RegressResponse'] = {'type': 'object', 'properties': {'results': {'type': 'array',
                                                                               'items': {'type': 'number'}}},
                                  'required': ['results']}
    for kind, names in examples_calls.items():
        if names:
            schemas[f'{kind.capitalize()}Request'] = {
                'type': 'object',
                'properties': {'signature_name': {'type': 'string', 'enum': names + (
                    [''] if DEFAULT_SIGNATURE in names else [])},
                    'examples': {'type': 'array', 'minItems': 1, 'items': _ref('Example')},
                    'context': _ref('Example')},
                'required': ['examples'] + ([] if DEFAULT_SIGNATURE in names else ['signature_name'])}

    errors = {str(code): {'description': what, **_body('Error')} for code, what in (
        (400, 'a malformed request, or inputs the signature or graph refuses'),
        (401, 'no or an unknown bearer token (with access control on)'),
        (403, "the token's roles do not allow this call or signature"),
        (404, 'no such model, version or label'),
        (413, 'the request is larger than the server takes'),
        (503, 'not ready: no version loaded, shutting down, or the request log is full'))}

    def operation(summary: str, request: Optional[str], response: str, operation_id: str) -> Dict[str, Any]:
        op: Dict[str, Any] = {'summary': summary, 'operationId': operation_id,
                              'responses': {'200': {'description': 'the answer', **_body(response)}, **errors}}
        if request:
            op['requestBody'] = {'required': True, **_body(request)}
        return op

    paths: Dict[str, Any] = {}
    addressing = {'': ([], 'the version the server picks (the canary split, else the latest)'),
                  '/versions/{version}': ([{'name': 'version', 'in': 'path', 'required': True,
                                            'schema': {'type': 'integer', 'minimum': 0}}], 'a version'),
                  '/labels/{label}': ([{'name': 'label', 'in': 'path', 'required': True,
                                        'schema': {'type': 'string'}}], 'a version label')}
    for suffix, (parameters, whom) in addressing.items():
        base = f'/v1/models/{model_name}{suffix}'
        tag = suffix.split('/')[1] if suffix else 'model'
        calls = {f'{base}:predict': operation(f'Predict with {whom}', 'PredictRequest', 'PredictResponse',
                                              f'predict_{tag}'),
                 f'{base}/metadata': {'get': {'summary': f'The signatures of {whom}', 'operationId': f'metadata_{tag}',
                                              'responses': {'200': {'description': 'SignatureDefs as TF Serving '
                                                                                   'prints them'}, **errors}}}}
        calls[f'{base}:predict'] = {'post': calls[f'{base}:predict']}
        for kind, names in examples_calls.items():
            if names:
                calls[f'{base}:{kind}'] = {'post': operation(f'{kind.capitalize()} tf.Examples with {whom}',
                                                             f'{kind.capitalize()}Request',
                                                             f'{kind.capitalize()}Response', f'{kind}_{tag}')}
        for path, item in calls.items():
            if parameters:
                item['parameters'] = parameters
            paths[path] = item
    return {
        'openapi': '3.1.0',
        'info': {'title': f'{model_name}: TF Serving REST API', 'version': str(version),
                 'description': f'Generated from the signatures of version {version} of {model_name}. Errors are '
                                '{"error": "..."} with the HTTP status TF Serving maps their code to.'},
        'paths': paths,
        'components': {'schemas': schemas,
                       'securitySchemes': {'bearer': {'type': 'http', 'scheme': 'bearer'}}},
    }
