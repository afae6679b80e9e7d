"""SSH keys: the MD5 fingerprint DigitalOcean shows, and the /v2/account/keys handlers."""

import base64
import binascii
import hashlib

from .errors import not_found, unprocessable
from .plumbing import Reply, static_listing
from .validation import MAX_NAME


def render_key(row):
    return {"id": row["id"], "fingerprint": row["fingerprint"],
            "public_key": row["public_key"], "name": row["name"]}


def ssh_fingerprint(public_key):
    """The MD5 fingerprint DigitalOcean shows (aa:bb:...), or 422 for a bad key."""
    fields = public_key.split() if isinstance(public_key, str) else []
    digest = hashlib.md5(_key_blob(fields), usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _key_blob(fields):
    # A key line is "<type> <base64 blob> [comment]", and the blob starts with
    # the length-prefixed type name again: checking that catches truncated and
    # mis-pasted keys, not just bad base64.
    if len(fields) >= 2:
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except binascii.Error:
            blob = b""
        type_end = 4 + int.from_bytes(blob[:4], "big")
        if blob[4:type_end] == fields[0].encode() and len(blob) > type_end:
            return blob
    raise unprocessable("Key invalid, key should be of the format `type key [comment]`.")


def list_keys(app, req):
    return static_listing(req, "ssh_keys", [render_key(row) for row in app.store.list_keys()])


def _key_name(body):
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise unprocessable("name is required (at most 255 characters).")
    return name


def create_key(app, req):
    body = req.json()
    name = _key_name(body)
    fingerprint = ssh_fingerprint(body.get("public_key"))
    row = app.store.add_key(name, body["public_key"].strip(), fingerprint)
    if row is None:
        raise unprocessable("SSH Key is already in use on your account.")
    return Reply(201, {"ssh_key": render_key(row)})


def _existing_key(app, req):
    row = app.store.find_key(req.params["key"])
    if row is None:
        raise not_found()
    return row


def get_key(app, req):
    return Reply(200, {"ssh_key": render_key(_existing_key(app, req))})


def update_key(app, req):
    row = _existing_key(app, req)
    app.store.rename_key(row["id"], _key_name(req.json()))
    return Reply(200, {"ssh_key": render_key(app.store.find_key(row["id"]))})


def delete_key(app, req):
    app.store.delete_key(_existing_key(app, req)["id"])
    return Reply(204)
