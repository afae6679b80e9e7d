"""cloudinit.merge read back the way cloud-init reads user data: Python's email parser, then a walk over the
parts (cloudinit/user_data.py), each part's type taken from its header or, for the generic types, from how its
text starts (cloudinit/handlers/__init__.py, type_from_starts_with).

No database and no servers: only cloudprovisioner.cloudinit is exercised.
"""

import email
import email.mime.multipart
import email.mime.text
import re

import pytest
import yaml

from cloudprovisioner import cloudinit

# cloud-init's INCLUSION_TYPES_MAP, written out here so that the module is checked against it, not against itself.
CLOUD_INIT_STARTS = {
    "#include": "text/x-include-url",
    "#include-once": "text/x-include-once-url",
    "#!": "text/x-shellscript",
    "#cloud-config": "text/cloud-config",
    "#part-handler": "text/part-handler",
    "#cloud-boothook": "text/cloud-boothook",
    "#cloud-config-archive": "text/cloud-config-archive",
    "#cloud-config-jsonp": "text/cloud-config-jsonp",
    "## template: jinja": "text/jinja2",
}
# Types whose header cloud-init does not take at its word (user_data.py: TYPE_NEEDED + x-shellscript).
SNIFFED = ("text/plain", "text/x-not-multipart", "text/x-shellscript")

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-cloudprovisioner.conf"
# The module docstring: our sshd file appends to the user's write_files; our ssh_pwauth replaces theirs.
APPEND_TO_USERS = "list(append)+dict(no_replace,recurse_list)+str()"
REPLACE_USERS = "dict(replace)+list()+str()"
# RFC 2046 section 5.1.1: boundary := 0*69<bchars> bcharsnospace, at most 70 characters.
BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def type_from_starts_with(payload):
    text = payload.decode("utf-8").lower().lstrip()
    for start in sorted(CLOUD_INIT_STARTS, key=len, reverse=True):
        if text.startswith(start):
            return CLOUD_INIT_STARTS[start]
    return None


def read(document):
    """(message, [(content type, part), ...]) as cloud-init would handle them, in order."""
    raw = document.encode("utf-8")
    # user_data.convert_string: only a document naming mime-version early on is read as MIME at all.
    assert b"mime-version:" in raw[:4096].lower()
    message = email.message_from_string(raw.decode("utf-8"))
    assert message.get_content_type() == "multipart/mixed"
    assert message.defects == []
    handled = []
    for part in message.walk():
        assert part.defects == []
        if part.get_content_maintype() == "multipart":  # user_data.is_skippable: containers only
            continue
        kind = part.get_content_type()
        if kind in SNIFFED:
            kind = type_from_starts_with(part.get_payload(decode=True)) or kind
        handled.append((kind, part))
    return message, handled


def payload(part):
    return part.get_payload(decode=True)


def check_platform_parts(parts):
    """Our three parts, last, as the module docstring says: the sshd file, ssh_pwauth, then the script that
    has the last word (what it does on a first boot: tests/test_cloudinit_wins.py)."""
    (sshd_kind, sshd), (pwauth_kind, pwauth), (enforce_kind, enforce) = parts
    assert enforce_kind == "text/x-shellscript" and payload(enforce).startswith(b"#!/bin/sh\n")
    assert enforce.get_filename() == "zz-cloudprovisioner-sshd"
    # cloud-init runs user data's scripts in name order: ours after runcmd and after unnamed parts.
    assert sorted(["runcmd", "part-001", "part-999", enforce.get_filename()])[-1] == enforce.get_filename()
    assert sshd_kind == pwauth_kind == "text/cloud-config"
    assert sshd["Merge-Type"] == APPEND_TO_USERS
    assert pwauth["Merge-Type"] == REPLACE_USERS
    sshd_config, pwauth_config = yaml.safe_load(payload(sshd)), yaml.safe_load(payload(pwauth))
    assert payload(sshd).startswith(b"#cloud-config\n") and payload(pwauth).startswith(b"#cloud-config\n")
    assert "ssh_pwauth" not in sshd_config
    check_drop_in(sshd_config["write_files"])
    assert pwauth_config == {"ssh_pwauth": False}
    assert pwauth_config["ssh_pwauth"] is False
    # Together they say what PLATFORM_CONFIG says alone.
    assert {**sshd_config, **pwauth_config} == yaml.safe_load(cloudinit.PLATFORM_CONFIG)


def check_drop_in(write_files):
    assert write_files == [{"path": SSHD_DROP_IN,
                            "content": "PasswordAuthentication no\nKbdInteractiveAuthentication no\nMatch all\n"
                                       "    PasswordAuthentication no\n    KbdInteractiveAuthentication no\n"}]


# ---------------------------------------------------------------- no user data

def test_platform_config_is_cloud_config_yaml():
    assert cloudinit.PLATFORM_CONFIG.startswith("#cloud-config\n")
    config = yaml.safe_load(cloudinit.PLATFORM_CONFIG)
    assert config["ssh_pwauth"] is False
    check_drop_in(config["write_files"])
    assert set(config) == {"ssh_pwauth", "write_files"}


@pytest.mark.parametrize("user_data", [None, "", " ", "\n", "\r\n\t \n", "\u3000\n"])
def test_no_user_data_gives_the_platform_config_alone(user_data):
    assert cloudinit.merge(user_data) == cloudinit.PLATFORM_CONFIG


# ---------------------------------------------------------------- each format cloud-init recognises

FORMATS = [
    ("#cloud-config\npackages: [htop]\nwrite_files:\n  - path: /etc/motd\n    content: hi\n", "text/cloud-config"),
    ("#!/bin/bash\nset -eu\necho hello > /tmp/hello\n", "text/x-shellscript"),
    ("#!/usr/bin/env python3\nprint('hi')\n", "text/x-shellscript"),
    ("#include\nhttps://example.com/one.yaml\nhttps://example.com/two.sh\n", "text/x-include-url"),
    ("#include-once\nhttps://example.com/once.yaml\n", "text/x-include-once-url"),
    ("#cloud-boothook\n#!/bin/sh\necho booted > /run/booted\n", "text/cloud-boothook"),
    ("#part-handler\ndef list_types():\n    return ['text/x-mine']\n\n"
     "def handle_part(data, ctype, filename, payload):\n    pass\n", "text/part-handler"),
    ("#cloud-config-archive\n- type: text/cloud-config\n  content: |\n    #cloud-config\n    packages: [vim]\n"
     "- content: |\n    #!/bin/sh\n    echo archived\n", "text/cloud-config-archive"),
    ('#cloud-config-jsonp\n[{"op": "add", "path": "/packages", "value": ["jq"]}]\n', "text/cloud-config-jsonp"),
    ("## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}-web\n", "text/jinja2"),
    ("## template: jinja\n#!/bin/sh\necho {{ v1.region }}\n", "text/jinja2"),
    # cloud-init lowers the case and skips leading white space before it compares.
    ("\n\n   #Cloud-Config\nruncmd: [ls]\n", "text/cloud-config"),
    ("#CLOUD-BOOTHOOK\necho\n", "text/cloud-boothook"),
    ("\t#Include-Once\nhttps://example.com/x\n", "text/x-include-once-url"),
]


@pytest.mark.parametrize(("user_data", "kind"), FORMATS, ids=[kind + str(i) for i, (_, kind) in enumerate(FORMATS)])
def test_users_document_comes_first_then_ours(user_data, kind):
    _, parts = read(cloudinit.merge(user_data))
    assert [part_kind for part_kind, _ in parts] == [kind, "text/cloud-config", "text/cloud-config",
                                                     "text/x-shellscript"]
    (_, user), *ours = parts
    assert user.get_content_type() == kind  # the header says it too, not only the first line
    assert user["Merge-Type"] is None  # the user's own merging is theirs to say (merge_how)
    assert payload(user) == user_data.encode("utf-8")
    check_platform_parts(ours)


def test_users_cloud_config_is_left_as_it_is():
    user_data = "#cloud-config\nssh_pwauth: true\nwrite_files:\n  - path: /etc/mine\n    content: mine\n"
    _, parts = read(cloudinit.merge(user_data))
    assert yaml.safe_load(payload(parts[0][1])) == {"ssh_pwauth": True,
                                                    "write_files": [{"path": "/etc/mine", "content": "mine"}]}
    check_platform_parts(parts[1:])


def test_content_type_agrees_with_cloud_init_on_every_start():
    assert set(cloudinit.STARTS) == set(CLOUD_INIT_STARTS)
    for start, kind in CLOUD_INIT_STARTS.items():
        assert cloudinit.content_type(start + "\n") == kind
        assert cloudinit.content_type("  " + start.upper() + " x\n") == kind


# ---------------------------------------------------------------- a MIME document of the user's

def users_mime(linesep="\n"):
    document = email.mime.multipart.MIMEMultipart()
    config = email.mime.text.MIMEText("#cloud-config\npackages: [htop]\n", "cloud-config")
    config.add_header("Merge-Type", "list(append)+dict(recurse_array)+str()")
    document.attach(config)
    document.attach(email.mime.text.MIMEText("#!/bin/sh\necho from mime\n", "x-shellscript"))
    document.attach(email.mime.text.MIMEText("#include\nhttps://example.com/inc\n", "x-include-url"))
    return document.as_string().replace("\n", linesep)


@pytest.mark.parametrize("linesep", ["\n", "\r\n"])
def test_users_mime_document_is_walked_into(linesep):
    user_data = users_mime(linesep)
    assert user_data.startswith("Content-Type: multipart/mixed")
    message, parts = read(cloudinit.merge(user_data))
    assert [kind for kind, _ in parts] == ["text/cloud-config", "text/x-shellscript", "text/x-include-url",
                                           "text/cloud-config", "text/cloud-config", "text/x-shellscript"]
    bodies = [payload(part).replace(b"\r\n", b"\n") for _, part in parts[:3]]
    assert bodies == [b"#cloud-config\npackages: [htop]\n", b"#!/bin/sh\necho from mime\n",
                      b"#include\nhttps://example.com/inc\n"]
    assert parts[0][1]["Merge-Type"] == "list(append)+dict(recurse_array)+str()"
    check_platform_parts(parts[3:])
    # Nested, not flattened: the user's multipart is one part of ours, with its own boundary.
    outer = message.get_payload()
    assert len(outer) == 4
    assert outer[0].is_multipart()
    assert outer[0].get_boundary() != message.get_boundary()


def test_hand_written_mime_document_is_walked_into():
    user_data = ('content-type: multipart/mixed; boundary="XYZ"\nMIME-Version: 1.0\n\n'
                 "--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n"
                 "--XYZ\nContent-Type: text/plain\n\n#cloud-config\nruncmd: [true]\n--XYZ--\n")
    _, parts = read(cloudinit.merge(user_data))
    assert [kind for kind, _ in parts] == ["text/x-shellscript", "text/cloud-config", "text/cloud-config",
                                           "text/cloud-config", "text/x-shellscript"]
    assert payload(parts[0][1]) == b"#!/bin/sh\necho one"
    check_platform_parts(parts[2:])


def test_users_mime_headers_are_kept_as_written():
    # Not rewritten as RFC 2047 encoded words, which would hide the filename from cloud-init (get_filename).
    user_data = ('Content-Type: multipart/mixed; boundary="XYZ"\nMIME-Version: 1.0\n\n'
                 '--XYZ\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename="café.sh"\n'
                 "X-Long: " + "a" * 200 + "\n\n#!/bin/sh\necho one\n--XYZ--\n")
    document = cloudinit.merge(user_data)
    assert 'Content-Disposition: attachment; filename="café.sh"\n' in document
    assert "X-Long: " + "a" * 200 + "\n" in document
    _, parts = read(document)
    assert parts[0][1].get_filename() == "café.sh"
    check_platform_parts(parts[1:])


@pytest.mark.parametrize("depth", [400, 3000])  # email fails writing the one, reading the other
def test_users_mime_document_nested_too_deeply_is_refused(depth):
    # email reads and writes nested multiparts recursively: too deep a document is a 422, not a 500.
    user_data = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\nMIME-Version: 1.0\n\n--b{i}\n'
                        for i in range(depth))
    user_data += "Content-Type: text/x-shellscript\n\n#!/bin/sh\n" + "".join(f"--b{i}--\n" for i in range(depth))
    with pytest.raises(ValueError) as caught:
        cloudinit.merge(user_data)
    assert str(caught.value) == cloudinit.TOO_DEEP


# ---------------------------------------------------------------- the user's text, byte for byte

TEXTS = {
    "ascii": "#!/bin/sh\necho 'hello, world'\n",
    "no final line break": "#!/bin/sh\necho hi",
    "blank lines around": "\n\n#cloud-config\npackages: [htop]\n\n\n",
    "non-ascii": '#cloud-config\nfinal_message: "héllo wörld ✓ 日本語 🚀"\n',
    "non-ascii no final line break": "#!/bin/sh\necho ünïcode",
    "crlf": "#!/bin/sh\r\necho one\r\necho two\r\n",
    "crlf non-ascii": "#cloud-config\r\nfinal_message: café\r\n",
    "crlf blank end": "#!/bin/sh\r\necho one\r\n\r\n",
    "lone cr end": "#!/bin/sh\recho one\r",
    "lone cr end non-ascii": "#!/bin/sh\recho é\r",
    "dash lines": "#!/bin/sh\ncat <<'EOF'\n--\n---\n--boundary\n--boundary--\n--==cloudprovisioner-0==\n"
                  "-- \nEOF\n",
    "dash lines non-ascii": "#!/bin/sh\ncat <<'EOF'\n--é\n--\n--==cloudprovisioner-\nEOF\n",
    "dash lines crlf": "#!/bin/sh\r\n--\r\n--x--\r\n",
    "header-like lines": "#!/bin/sh\nContent-Type: multipart/mixed; boundary=\"x\"\nMIME-Version: 1.0\n\n--x\n"
                         "Content-Type: text/plain\n\nhi\n--x--\n",
    "tabs and trailing spaces": "#cloud-config\nruncmd:\n\t- [echo, '  x  ']   \n   \n",
    "long line": "#!/bin/sh\necho " + "x" * 5000 + "\n",
}


@pytest.mark.parametrize("name", TEXTS)
def test_users_text_comes_back_byte_for_byte(name):
    user_data = TEXTS[name]
    document = cloudinit.merge(user_data)
    message, parts = read(document)
    user = parts[0][1]
    assert payload(user) == user_data.encode("utf-8")
    # cloud-init's util.fully_decoded_payload: the bytes decoded as UTF-8.
    assert payload(user).decode("utf-8", "surrogateescape") == user_data
    # 7bit where the text goes as it is; base64 past ASCII, and for a CR, which email's writer would turn into "\n".
    assert user["Content-Transfer-Encoding"] == ("7bit" if user_data.isascii() and "\r" not in user_data
                                                 else "base64")
    assert len(parts) == 4
    check_platform_parts(parts[1:])
    assert message.get_boundary() not in user_data


def test_non_ascii_survives_cloud_inits_own_decoding():
    # A message parsed from str hands 8bit non-ASCII back as raw-unicode-escape: garbled. base64 is not.
    user_data = TEXTS["non-ascii"]
    _, parts = read(cloudinit.merge(user_data))
    assert parts[0][1]["Content-Transfer-Encoding"] == "base64"
    assert payload(parts[0][1]).decode("utf-8") == user_data
    assert yaml.safe_load(payload(parts[0][1]))["final_message"] == "héllo wörld ✓ 日本語 🚀"


def test_unpaired_surrogate_is_refused():
    with pytest.raises(ValueError) as caught:
        cloudinit.merge("#!/bin/sh\necho \ud800\n")
    assert str(caught.value) == cloudinit.NOT_UNICODE


# ---------------------------------------------------------------- the boundary

@pytest.mark.parametrize("name", TEXTS)
def test_boundary_is_only_on_delimiter_lines(name):
    document = cloudinit.merge(TEXTS[name])
    message = email.message_from_string(document)
    boundary = message.get_boundary()
    assert BOUNDARY.fullmatch(boundary)
    assert boundary not in TEXTS[name]
    assert document.count(boundary) == 1 + 4 + 1  # the header, four delimiters, the close
    delimiters = [line for line in document.splitlines() if line.startswith("--" + boundary)]
    assert delimiters == ["--" + boundary] * 4 + ["--" + boundary + "--"]


def test_boundaries_differ_from_one_merge_to_the_next():
    boundaries = {email.message_from_string(cloudinit.merge("#!/bin/sh\n")).get_boundary() for _ in range(20)}
    assert len(boundaries) == 20


def test_a_boundary_found_in_the_users_text_is_not_used(monkeypatch):
    """The random part is forced: first to one whose boundary the user's text holds, then to another."""
    calls = []

    def urandom(size):
        calls.append(size)
        return bytes([len(calls) % 256]) * size

    monkeypatch.setattr(cloudinit.os, "urandom", urandom)
    taken = email.message_from_string(cloudinit.merge("#!/bin/sh\n")).get_boundary()
    assert len(calls) == 1
    calls.clear()
    user_data = f"#!/bin/sh\n# {taken}\n--{taken}\n--{taken}--\n"
    document = cloudinit.merge(user_data)
    assert len(calls) == 2
    message, parts = read(document)
    assert message.get_boundary() != taken
    assert message.get_boundary() not in user_data
    assert payload(parts[0][1]) == user_data.encode("utf-8")
    check_platform_parts(parts[1:])


# ---------------------------------------------------------------- not cloud-init

@pytest.mark.parametrize("user_data", [
    "hello world\n",
    "packages: [htop]\nruncmd: [ls]\n",               # YAML, but no #cloud-config line
    "---\npackages: [htop]\n",
    "# cloud-config\npackages: [htop]\n",             # a space after the hash: cloud-init ignores it too
    "#cloudconfig\n",
    '{"packages": ["htop"]}',
    "echo hello\n",
    "Content-Type: text/cloud-config\nMIME-Version: 1.0\n\n#cloud-config\n",  # MIME, but no multipart
    "\ufeff#cloud-config\n",                          # a byte-order mark first
])
def test_unknown_start_is_refused(user_data):
    with pytest.raises(ValueError) as caught:
        cloudinit.merge(user_data)
    assert str(caught.value) == cloudinit.NOT_CLOUD_INIT
    assert type_from_starts_with(user_data.encode("utf-8")) is None
