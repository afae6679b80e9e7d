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
