"""The user data a new droplet boots with: the user's own document plus ours, which keeps SSH password login off.

`merge(user_data)` returns what goes to the cloud. With no user data that is
PLATFORM_CONFIG alone; otherwise a MIME multi-part document, made with the
standard library's `email` package (cloud-init reads it back with the same
package), holding the user's document first and ours last. The caller checks
sizes. `email` is imported inside merge(), so only a server create with user
data pays for it, about 14 ms on the 2-core test host (2026-11-29), ~13 ms of
it `.venv/bin/python -X importtime -c "import email.mime.multipart" 2>&1 |
tail -1`; every other request pays nothing.

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

Why ours wins over what the user's document writes (sshd_config(5): a keyword's first value is the one
kept; the Include of sshd_config.d/*.conf reads the files in lexical order; a Match block's value overrides
the global one, and of the Match blocks that apply the first wins):

- write_files is a list the user's entries come first in, and a user can name a file to sort before ours
  (`00-anything.conf`), defer it to cloud-init's final stage (`defer: true`, written after ours), write
  `Match all` blocks, or replace sshd_config itself; a user's `write_files: null` even drops our entry from
  the merged list (dict(no_replace) keeps a value that is no list). So the drop-in written in the init stage
  is only the first line of defence, for the time between sshd's start and the final stage.
- The last word is a shell script of ours, ENFORCE_SCRIPT, a part of its own that no merge can drop:
  cloud-init runs the scripts of user data in its final stage (scripts-user), after write-files-deferred,
  in name order, and ENFORCE_NAME sorts after `runcmd` (the user's runcmd entries) and after the
  `part-NNN` names of unnamed parts. It writes our drop-in again, puts `Include` of it on the first
  line of sshd_config (so it is read before any other file, whatever their names; an sshd older than
  OpenSSH 8.2 knows no Include, and gets the settings themselves first) and reloads sshd.

This is a safe default, not a jail: user data may run scripts as root (a script of the user's named to sort
after ours, a boothook, a part handler, a file written over cloud-init's own), and such code can switch
password login back on.
"""

import os

_HEADER = (
    "#cloud-config\n"
    "# Written by CloudProvisioner: logins on this server use SSH keys only,\n"
    "# so sshd's password and keyboard-interactive logins are switched off.\n"
)
_PASSWORD_LOGIN_OFF = "ssh_pwauth: false\n"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-cloudprovisioner.conf"
_OFF = "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
# The Match block outranks any Match block read after it (a user's `Match all` included).
SSHD_SETTINGS = _OFF + "Match all\n" + "".join(f"    {line}\n" for line in _OFF.splitlines())
_SSHD_FILE = (
    "# Belt and braces: sshd keeps the first value it reads, and 00- is read first.\n"
    "write_files:\n"
    f"  - path: {SSHD_DROP_IN}\n"
    "    content: |\n"
    + "".join(f"      {line}\n" for line in SSHD_SETTINGS.splitlines())
)
PLATFORM_CONFIG = _HEADER + _PASSWORD_LOGIN_OFF + _SSHD_FILE

# Sorts after "runcmd" and the "part-NNN" of unnamed parts in cloud-init's scripts folder, run in name order.
ENFORCE_NAME = "zz-cloudprovisioner-sshd"
ENFORCE_SCRIPT = f"""#!/bin/sh
# CloudProvisioner: SSH keys only. Runs after the user data's write_files and runcmd; sshd reads this first.
drop_in={SSHD_DROP_IN}
main=/etc/ssh/sshd_config
[ -f "$main" ] || exit 0
mkdir -p "${{drop_in%/*}}"
cat > "$drop_in" <<'SETTINGS'
{SSHD_SETTINGS}SETTINGS
chmod 644 "$drop_in"
cp -p "$main" "$main.cloudprovisioner"
# Before OpenSSH 8.2 (no Include, no sshd_config.d) the settings themselves go first.
set -- $(ssh -V 2>&1 | sed -n 's/^OpenSSH_\\([0-9]*\\)\\.\\([0-9]*\\).*/\\1 \\2/p') 0 0
if [ "$1" -gt 8 ] || {{ [ "$1" -eq 8 ] && [ "$2" -ge 2 ]; }} || grep -qi '^[[:space:]]*Include[[:space:]]' "$main"; then
    first="Include $drop_in"
else
    first="$(printf '%s\\n' {" ".join(repr(line) for line in _OFF.splitlines())})"
fi
{{ printf '%s\\n' "$first"; grep -vxF "$first" "$main.cloudprovisioner"; }} > "$main"
rm -f "$main.cloudprovisioner"
for reload in "systemctl try-reload-or-restart ssh.service sshd.service" "service ssh reload" "service sshd reload"; do
    $reload >/dev/null 2>&1 && break
done
exit 0
"""

# Ours: two cloud-config parts (see the module's docstring for why two, and why these merge types), then
# ENFORCE_SCRIPT.
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
TOO_DEEP = "user_data's MIME multi-part document is nested too deeply: keep it to a few levels of multipart."


def merge(user_data):
    """The user data to send: ours alone, or the user's document followed by ours."""
    if not user_data or not user_data.strip():
        return PLATFORM_CONFIG
    try:
        user_data.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(NOT_UNICODE) from None
    import email.mime.multipart
    import email.policy
    document = email.mime.multipart.MIMEMultipart(boundary=_boundary(user_data))
    document.attach(_user_part(user_data))
    document.attach(_part(_HEADER + _SSHD_FILE, _APPEND_TO_USERS, "cloudprovisioner-sshd-file"))
    document.attach(_part(_HEADER + _PASSWORD_LOGIN_OFF, _REPLACE_USERS, "cloudprovisioner-ssh-pwauth"))
    enforce = _text(ENFORCE_SCRIPT, "x-shellscript", "us-ascii")
    enforce.add_header("Content-Disposition", "attachment", filename=ENFORCE_NAME)
    document.attach(enforce)
    try:
        # email.policy.default without a line length writes every header as it is, where the default
        # (compat32) policy would rewrite a header of the user's holding non-ASCII as one encoded word.
        return document.as_string(policy=email.policy.default)
    except RecursionError:  # email writes nested multiparts recursively
        raise ValueError(TOO_DEEP) from None


def content_type(text):
    """What cloud-init would take `text` for, or ValueError if it is no cloud-init document."""
    start = text.lstrip().lower()
    for prefix in sorted(STARTS, key=len, reverse=True):
        if start.startswith(prefix):
            return STARTS[prefix]
    raise ValueError(NOT_CLOUD_INIT)


def _user_part(text):
    # A MIME document already is a part: its own headers lead it, and cloud-init walks into it.
    # It is read here as cloud-init reads it (email's parser) and written back as one part of ours.
    if text[:len(MIME_START)].lower() == MIME_START:
        import email
        try:
            return email.message_from_string(text)
        except RecursionError:  # email reads nested multiparts recursively
            raise ValueError(TOO_DEEP) from None
    subtype = content_type(text).partition("/")[2]
    if text.isascii() and "\r" not in text:
        return _text(text, subtype, "us-ascii")  # 7bit: the text as it is
    # base64 hands the text back byte for byte where 7bit cannot. Past ASCII: cloud-init decodes an 8bit
    # part with raw-unicode-escape (email's get_payload(decode=True) on a message parsed from str), which
    # garbles it. A CR: email writes every line break of a text part as "\n", so CRs would be lost.
    return _text(text, subtype, "utf-8")


def _part(body, merge_type, filename):
    """One of our cloud-config parts."""
    part = _text(body, "cloud-config", "us-ascii")
    part["Merge-Type"] = merge_type
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def _text(body, subtype, charset):
    """A text/<subtype> part: 7bit for us-ascii, base64 for utf-8 (email.charset's choice)."""
    import email.mime.text
    part = email.mime.text.MIMEText(body, subtype, charset)
    del part["MIME-Version"]  # the document's own says it; 18 bytes a part off the cloud's 64 KiB
    return part


def _boundary(text):
    while True:
        boundary = f"==cloudprovisioner-{os.urandom(16).hex()}=="
        if boundary not in text:
            return boundary
