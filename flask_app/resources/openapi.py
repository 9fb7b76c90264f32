"""GET /openapi.json: the API description, kept in openapi.yaml beside the code."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from flask_restful import Resource

from .common import json_response

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@cache
def openapi_document() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


class OpenApi(Resource):
    def get(self):
        """The OpenAPI 3 document."""
        return json_response(openapi_document())
