import json
import re
from pathlib import Path

from healthpipe.common.messages import JSON_SCHEMA, SeriesWindow

DOC = Path(__file__).resolve().parents[2] / "docs" / "message-format.md"


def test_documented_schema_matches_the_code():
    block = re.search(r"## JSON Schema\n\n```json\n(.*?)\n```", DOC.read_text(), re.S)
    assert block and json.loads(block.group(1)) == JSON_SCHEMA


def test_messages_validate_against_the_schema():
    # A tiny structural check (no jsonschema dependency): required keys and types as the schema says.
    doc = json.loads(SeriesWindow("q", "gauge", {"a": "b"}, 0, 1, [(1, "NaN")]).to_json())
    assert set(doc) == set(JSON_SCHEMA["required"]) == set(JSON_SCHEMA["properties"])
    assert doc["v"] == JSON_SCHEMA["properties"]["v"]["const"]
