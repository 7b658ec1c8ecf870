"""The curated schema, shipped with the package so every runner finds it."""

import os

CURATED_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema.pbtxt')
