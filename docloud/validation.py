"""Field checks shared by several resources: names, tags, and the numeric
fields of the /_sandbox/ knobs. A name or tag check takes `refuse`, the error
its endpoint documents: 422 unprocessable_entity for most, 400 where
DigitalOcean documents only a 400 (firewall writes, tag creation)."""

import re

from .errors import bad_request, unprocessable

TAG_RE = re.compile(r"^[a-zA-Z0-9_\-\:]+$")
MAX_NAME = 255


def checked_name(name, pattern, required, invalid, refuse=unprocessable):
    """One name rule for droplets, VPCs and firewalls: present, a string, at most 255, matching."""
    if name is None:
        raise refuse(required)
    if not isinstance(name, str) or len(name) > MAX_NAME or not pattern.fullmatch(name):
        raise refuse(invalid.format(name=name))
    return name


def check_tag(tag, refuse=unprocessable):
    if not isinstance(tag, str) or len(tag) > MAX_NAME or not TAG_RE.fullmatch(tag):
        raise refuse(f"Tag {tag!r} is invalid: tags may contain letters, numbers,"
                     " colons, dashes and underscores, at most 255.")


def parse_tags(tags, refuse=unprocessable):
    if tags is None:
        return ()
    if not isinstance(tags, list):
        raise refuse("tags must be a list of tag names.")
    for tag in tags:
        check_tag(tag, refuse)
    return tuple(dict.fromkeys(tags))


def int_field(body, key, default, low, high):
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{key} must be an integer from {low} to {high}.")
    return value


def number_field(body, key, default, low):
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise bad_request(f"{key} must be a number of at least {low}.")
    return float(value)
