"""Identifiers: opaque, unguessable, and sortable by creation time."""

import os
import time

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
LENGTH = 26


def new_id():
    """26 characters: 10 of milliseconds then 16 random, so ids sort by creation."""
    number = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(LENGTH):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def looks_like_id(value):
    return isinstance(value, str) and len(value) == LENGTH and all(c in ALPHABET for c in value)


def cursor_for(last_id):
    """A page cursor: opaque to clients (the hex of the last id on the page)."""
    return last_id.encode("ascii").hex()


def id_cursor(value):
    """The id inside a cursor this service gave out (a validation check)."""
    try:
        last_id = bytes.fromhex(value).decode("ascii")
    except ValueError:
        raise ValueError("not a cursor this service gave out") from None
    if not looks_like_id(last_id):
        raise ValueError("not a cursor this service gave out")
    return last_id
