"""The user data a new droplet boots with: the user's own document plus ours, which keeps SSH password login off.

`merge(user_data)` returns what goes to the cloud. With no user data that is
PLATFORM_CONFIG alone; otherwise a MIME multi-part document, written here as
plain text (importing `email` would cost every CGI request its start-up time),
holding the user's document first and ours last. The caller checks sizes.

How cloud-init reads it (cited so the choices below can be checked again):

- User data formats, https://docs.cloud-init.io/en/latest/explanation/format.html
  and its table https://docs.cloud-init.io/en/latest/reference/user_data_formats.html
  ("Headers and content types"): each format is recognised by its first line,
  #cloud-config -> text/cloud-config, #! -> text/x-shellscript, and so on; a
  MIME multi-part document's parts say their type instead. cloud-init does the
  recognising in handlers.type_from_starts_with: lower case, leading white space
  stripped, longest start first; STARTS mirrors its INCLUSION_TYPES_MAP.
- A MIME document inside a MIME document is read too: user_data.py walks the
  parts with email's Message.walk(), which descends into nested multiparts and
  skips only the containers.
- Merging, https://docs.cloud-init.io/en/latest/reference/merging.html: the
  cloud-config parts are merged in order; a part's `Merge-Type` header (or a
  `merge_how` key in it) says how that part merges into what came before, and
  without one cloud-init uses `dict(replace)+list()+str()` (handlers/cloud_config.py,
  DEF_MERGERS): a later part's keys replace earlier ones, lists included. `replace`
  replaces whole values and `no_replace` keeps the earlier value of every key
  except the lists it appends (with `recurse_list` and `list(append)`): no one
  setting does both. So our document goes as two parts after the user's: the
  sshd file with `list(append)+dict(no_replace,recurse_list)+str()`, which adds
  our entry to the user's write_files instead of dropping theirs, and then
  `ssh_pwauth: false` with `dict(replace)`, which beats a user's `ssh_pwauth: true`.

This is a safe default, not a jail: user data may run scripts as root, and a
script can switch password login back on.
"""

import base64
import os

_HEADER = (
    "#cloud-config\n"
    "# Written by CloudProvisioner: logins on this server use SSH keys only,\n"
    "# so sshd's password and keyboard-interactive logins are switched off.\n"
)
_PASSWORD_LOGIN_OFF = "ssh_pwauth: false\n"
_SSHD_FILE = (
    "# Belt and braces: sshd keeps the first value it reads, and 00- is read first.\n"
    "write_files:\n"
    "  - path: /etc/ssh/sshd_config.d/00-cloudprovisioner.conf\n"
    "    content: |\n"
    "      PasswordAuthentication no\n"
    "      KbdInteractiveAuthentication no\n"
)
PLATFORM_CONFIG = _HEADER + _PASSWORD_LOGIN_OFF + _SSHD_FILE

# Ours, as two parts (see the module's docstring for why two, and why these merge types).
_APPEND_TO_USERS = "list(append)+dict(no_replace,recurse_list)+str()"
_REPLACE_USERS = "dict(replace)+list()+str()"

# The start of a document -> the content type cloud-init infers from it.
STARTS = {
    "#cloud-config": "text/cloud-config",
    "#!": "text/x-shellscript",
    "#include": "text/x-include-url",
    "#include-once": "text/x-include-once-url",
    "#cloud-boothook": "text/cloud-boothook",
    "#part-handler": "text/part-handler",
    "#cloud-config-archive": "text/cloud-config-archive",
    "#cloud-config-jsonp": "text/cloud-config-jsonp",
    "## template: jinja": "text/jinja2",
}
MIME_START = "content-type: multipart/"
NOT_CLOUD_INIT = ("user_data must be a cloud-init document: it has to start with "
                  + ", ".join(STARTS) + " or Content-Type: multipart/ (a MIME multi-part document).")
NOT_UNICODE = "user_data must be valid Unicode text: it holds an unpaired surrogate."


def merge(user_data):
    """The user data to send: ours alone, or the user's document followed by ours."""
    if not user_data or not user_data.strip():
        return PLATFORM_CONFIG
    try:
        user_data.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(NOT_UNICODE) from None
    parts = [_user_part(user_data),
             _part("text/cloud-config", _HEADER + _SSHD_FILE, merge_type=_APPEND_TO_USERS,
                   filename="cloudprovisioner-sshd-file"),
             _part("text/cloud-config", _HEADER + _PASSWORD_LOGIN_OFF, merge_type=_REPLACE_USERS,
                   filename="cloudprovisioner-ssh-pwauth")]
    return _multipart(_boundary(user_data), parts)


def content_type(text):
    """What cloud-init would take `text` for, or ValueError if it is no cloud-init document."""
    start = text.lstrip().lower()
    for prefix in sorted(STARTS, key=len, reverse=True):
        if start.startswith(prefix):
            return STARTS[prefix]
    raise ValueError(NOT_CLOUD_INIT)


def _user_part(text):
    # A MIME document already is a part: its own headers lead it, and cloud-init walks into it.
    if text[:len(MIME_START)].lower() == MIME_START:
        return text
    kind = content_type(text)
    if text.isascii():
        return _part(kind, text)
    # cloud-init decodes 8bit parts with raw-unicode-escape (email's get_payload(decode=True) on a
    # message parsed from str), which garbles anything past ASCII; base64 hands it back byte for byte.
    return _part(kind, base64.encodebytes(text.encode("utf-8")).decode("ascii"), encoding="base64")


def _part(kind, body, encoding="8bit", merge_type=None, filename=None):
    headers = [f'Content-Type: {kind}; charset="utf-8"', f"Content-Transfer-Encoding: {encoding}"]
    if merge_type:
        headers.append(f"Merge-Type: {merge_type}")
    if filename:
        headers.append(f'Content-Disposition: attachment; filename="{filename}"')
    return "\n".join(headers) + "\n\n" + body


def _boundary(text):
    while True:
        boundary = f"==cloudprovisioner-{os.urandom(16).hex()}=="
        if boundary not in text:
            return boundary


def _multipart(boundary, parts):
    chunks = [f'Content-Type: multipart/mixed; boundary="{boundary}"\nMIME-Version: 1.0\n\n']
    for part in parts:
        chunks.append(f"--{boundary}\n{part}{_line_break(part)}")
    chunks.append(f"--{boundary}--\n")
    return "".join(chunks)


def _line_break(part):
    """The line break that goes before a boundary: MIME counts it as the boundary's (RFC 2046,
    section 5.1.1), so the parser removes exactly one and the part keeps its own last one.
    After a lone CR, a lone LF would join it into one CRLF, which the parser would then remove."""
    return "\r\n" if part.endswith("\r") else "\n"
