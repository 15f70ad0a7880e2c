"""What every report a test produces must be: valid against the shipped schema, JSON-ready."""

from __future__ import annotations

import json

import jsonschema

from drifttools import report_schema


def assert_valid_report(document: dict) -> None:
    """``document`` validates against the shipped report schema and serialises as JSON."""
    jsonschema.validate(document, report_schema())
    json.dumps(document)
