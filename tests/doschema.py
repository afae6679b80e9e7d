"""DigitalOcean's OpenAPI 3.0 response models as JSON Schemas, for tests.

    errors = validate(reply_json, "resources/droplets/responses/existing_droplet.yml")
    assert errors == []

    errors = validate_headers(answer_headers, "common/responses/no_content_with_content_type.yml")

A model path is relative to the do-openapi folder (tests/data/do-openapi: the
models the tests use, copied from DigitalOcean as its README says; or $DO_OPENAPI_DIR)
and may carry a fragment ("common/pages.yml#/pagination"). A response file (one
with `content`) stands for its application/json schema. Relative `$ref`s are
inlined, and OpenAPI's `nullable: true` becomes a type that accepts null, so the
result is a plain Draft 2020-12 schema. A response's headers are checked
against the schemas it documents for them.
"""

import datetime
import functools
import os
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker

# Documentation-only keys; `examples` also holds $refs into the examples/
# folders that the stored copy leaves out.
DROPPED_KEYS = {"example", "examples", "x-codeSamples"}
# Keywords whose value maps names to schemas, not keywords to values.
SCHEMA_MAPS = {"properties", "patternProperties"}

_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value):
    # jsonschema checks date-time only with an extra package; RFC 3339 is
    # simple enough to check here (the regex for the shape, Python for ranges).
    if not isinstance(value, str):
        return True
    return bool(_DATE_TIME.fullmatch(value)) and bool(datetime.datetime.fromisoformat(value))


def openapi_dir():
    override = os.environ.get("DO_OPENAPI_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data" / "do-openapi"


@functools.cache
def _load(path):
    return yaml.safe_load(path.read_text())


def _pointer(document, fragment):
    """The node at a JSON pointer ("/a/b"); the whole document for ""."""
    node = document
    for token in filter(None, fragment.split("/")):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _is_left_out_example(path):
    return not path.exists() and any(part.startswith("examples") for part in path.parts)


def _follow(ref, base, seen):
    file_part, _, fragment = ref.partition("#")
    target = (base.parent / file_part).resolve() if file_part else base
    if _is_left_out_example(target):
        return {}
    key = (target, fragment)
    if key in seen:
        raise ValueError(f"recursive $ref {ref} in {base}")
    return _convert(_pointer(_load(target), fragment), target, seen | {key})


def _nullable(schema):
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _convert(node, base, seen):
    """Inline $refs (OpenAPI 3.0 ignores a $ref's siblings) and rewrite
    `nullable`, recursively."""
    if isinstance(node, list):
        return [_convert(item, base, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _follow(node["$ref"], base, seen)
    schema = {}
    for key, value in node.items():
        if key in DROPPED_KEYS or key == "nullable":
            continue
        if key in SCHEMA_MAPS:
            schema[key] = {name: _convert(sub, base, seen) for name, sub in value.items()}
        else:
            schema[key] = _convert(value, base, seen)
    return _nullable(schema) if node.get("nullable") is True else schema


def model_schema(model_relpath):
    """The JSON Schema for a model or response file under the do-openapi folder."""
    file_part, _, fragment = model_relpath.partition("#")
    path = (openapi_dir() / file_part).resolve()
    node = _pointer(_load(path), fragment)
    if "content" in node:  # a response: its JSON body's schema
        node = node["content"]["application/json"]["schema"]
    schema = _convert(node, path, frozenset({(path, fragment)}))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


@functools.cache
def _validator(model_relpath):
    return Draft202012Validator(model_schema(model_relpath), format_checker=FORMATS)


def _branches(error):
    """Why each oneOf/anyOf branch failed: "title: reasons" per branch."""
    reasons = {}
    for sub in error.context:
        reasons.setdefault(sub.schema_path[0], []).append(_describe(sub))
    branch_schemas = error.schema[error.validator]
    return [f"{branch_schemas[index].get('title', f'#{index}')}: {'; '.join(found)}"
            for index, found in sorted(reasons.items())]


def _describe(error):
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    message = f"{where}: {error.message}"
    if error.context:
        message += " [" + " | ".join(_branches(error)) + "]"
    return message


def validate(instance, model_relpath):
    """Every way `instance` breaks the model, as readable strings ([] if none)."""
    errors = _validator(model_relpath).iter_errors(instance)
    return sorted(_describe(error) for error in errors)


def _header_value(text, schema):
    # A header is text on the wire: an integer header is an integer if its text is one.
    if schema.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def validate_headers(headers, response_relpath):
    """Every way `headers` (a mapping, any case) misses a header the response documents or
    breaks its schema, as readable strings ([] if none). OpenAPI lets a documented header
    be absent; the local cloud API is held to sending each, as DigitalOcean does."""
    file_part, _, fragment = response_relpath.partition("#")
    path = (openapi_dir() / file_part).resolve()
    documented = _convert(_pointer(_load(path), fragment).get("headers", {}), path, frozenset())
    sent = {name.lower(): value for name, value in headers.items()}
    errors = []
    for name, spec in documented.items():
        if name.lower() not in sent:
            errors.append(f"{name}: missing")
            continue
        schema = spec.get("schema", {})
        value = _header_value(sent[name.lower()], schema)
        errors += [f"{name}: {error.message}"
                   for error in Draft202012Validator(schema, format_checker=FORMATS).iter_errors(value)]
    return sorted(errors)
