"""The one validation style: a schema maps field names to `Field`s.

`validate(data, schema)` checks every field, rejects unknown ones, and raises
one 422 naming each field that is wrong, so a client fixes everything at once.
Values from an HTML form arrive as strings; list fields then also accept a
comma-separated string or a repeated field.
"""

import re

from .errors import invalid

MISSING = object()
# The names of firewalls, VPCs and workspaces: short, lower case, safe in a URL and in a cloud name.
NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
NAME_HINT = "must be 1-63 lower-case letters, digits and '-', starting with a letter or digit"
# No body of the API nests more than a few levels; the cap keeps every later walk of a body shallow,
# whatever the interpreter's stack has left.
MAX_NESTING = 32
NOT_UNICODE = ("holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is no character: "
               "send Unicode text")


class Field:
    def __init__(self, check, required=False, default=MISSING):
        self.check = check
        self.required = required
        self.default = default


class FormFields(dict):
    """Fields from an HTML form (every value a string, or a list of them for a repeated name):
    only these may give a list as a comma-separated string; JSON has arrays for that."""


def validate(data, schema):
    errors = {}
    clean = {}
    form = isinstance(data, FormFields)
    for name in data:
        if name not in schema:
            errors[name] = "unknown field"
    for name, field in schema.items():
        value = data.get(name, MISSING)
        if value is MISSING or value is None:
            if field.required:
                errors[name] = "required"
            elif field.default is not MISSING:
                clean[name] = field.default
            continue
        if isinstance(value, str) and getattr(field.check, "commas", False) and not form:
            errors[name] = "must be a list (a JSON array)"
            continue
        try:
            clean[name] = field.check(value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise invalid(errors)
    return clean


def plain_json(data):
    """ValueError unless parsed JSON holds only Unicode text, in its keys and its values (JSON's \\u escapes can
    spell a lone surrogate, which nothing downstream can encode), and nests at most MAX_NESTING deep.
    Walked without recursion."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            unicode_text(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                raise ValueError(f"nests deeper than {MAX_NESTING} levels")
            if isinstance(value, dict):
                for key in value:
                    unicode_text(key)
                value = value.values()
            pending.extend((item, depth + 1) for item in value)


def unicode_text(value):
    """`value` itself; ValueError(NOT_UNICODE) for a string holding a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(NOT_UNICODE) from None
    return value


def text(max_length, pattern=None, pattern_hint=None, allow_empty=True):
    """A string of at most `max_length` characters, optionally matching `pattern`."""
    compiled = re.compile(pattern) if pattern else None

    def check(value):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        unicode_text(value)
        if not value and not allow_empty:
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if compiled and not compiled.fullmatch(value):
            raise ValueError(pattern_hint or f"must match {pattern}")
        return value
    return check


def short_name():
    """A firewall's, VPC's or workspace's name (NAME_PATTERN)."""
    return text(63, NAME_PATTERN, NAME_HINT, allow_empty=False)


def byte_text(max_bytes):
    """A string whose UTF-8 encoding is at most `max_bytes` (cloud limits count bytes)."""
    def check(value):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(unicode_text(value).encode("utf-8")) > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes")
        return value
    return check


def one_of(allowed, what):
    allowed = list(allowed)

    def check(value):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if value not in allowed:
            raise ValueError(f"{what} {value!r} is not offered; choose one of: {', '.join(allowed)}")
        return value
    return check


def list_of(item_check, max_items, commas=True):
    """A list (or, from a form, a comma-separated string) of checked items, deduplicated.
    `commas=False` for lists inside JSON objects, which no form can send."""
    def check(value):
        if isinstance(value, str) and commas:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValueError("must be a list")
        if len(value) > max_items:
            raise ValueError(f"must have at most {max_items} items")
        clean = []
        for position, item in enumerate(value):
            try:
                item = item_check(item)
            except ValueError as exc:
                raise ValueError(f"item {position}: {exc}") from None
            if item not in clean:
                clean.append(item)
        return clean
    check.commas = commas
    return check


def boolean(value):
    """true or false; from a form (where everything is text) also "true"/"false" and "1"/"0"."""
    # `is`, not `in`: 1 == True in Python, and a JSON number is not a boolean.
    if value is True or value in ("true", "1"):
        return True
    if value is False or value in ("false", "0"):
        return False
    raise ValueError("must be true or false")


def integer(minimum, maximum):
    """A whole number; strings of digits are accepted (query strings, forms)."""
    def check(value):
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, str) and value.isascii() and value.strip().removeprefix("-").isdigit():
            value = int(value)  # ASCII digits only: int() would also take other scripts' digits
        if not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value
    return check
