"""The platform's sshd settings win over whatever the user's cloud-config writes: checked by carrying out the
merged user data with cloud-init's own code (Debian's cloud-init package: its user-data processor, part
handlers, mergers and the write-files, runcmd, write-files-deferred and scripts-user modules, in the order
cloud-init runs them; tests/cloudinit_boot.py), in a mount namespace whose /etc/ssh is a scratch folder, then
reading the resulting files as sshd reads them (sshd_config(5)): top to bottom, each Include's files in
lexical order, the first value of a keyword kept, a Match block's value over the global one (and of Match
blocks, the first). Every Match block is taken to apply: the worst case.
"""

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudprovisioner import cloudinit

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's cloud-init package puts its modules
UBUNTU_SSHD_CONFIG = ("Include /etc/ssh/sshd_config.d/*.conf\n\n#PasswordAuthentication yes\n"
                      "KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\n"
                      "Subsystem sftp /usr/lib/openssh/sftp-server\n")
OLD_SSHD_CONFIG = "PasswordAuthentication yes\nChallengeResponseAuthentication no\nUsePAM yes\n"  # OpenSSH 8.0
OURS = "/etc/ssh/sshd_config.d/00-cloudprovisioner.conf"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace (unshare -m) needs root")


def cloud_config(text):
    return "#cloud-config\n" + text


HOSTILE = {
    "a drop-in named to sort before ours": cloud_config(
        "write_files:\n"
        "  - path: /etc/ssh/sshd_config.d/00-anything.conf\n"
        "    content: |\n      PasswordAuthentication yes\n      KbdInteractiveAuthentication yes\n"),
    "the same, deferred to the final stage": cloud_config(
        "write_files:\n"
        "  - path: /etc/ssh/sshd_config.d/00-anything.conf\n"
        "    defer: true\n"
        "    content: |\n      PasswordAuthentication yes\n      KbdInteractiveAuthentication yes\n"),
    "ours overwritten, deferred": cloud_config(
        "write_files:\n"
        f"  - path: {OURS}\n"
        "    defer: true\n"
        "    content: |\n      PasswordAuthentication yes\n"),
    "a runcmd that edits ours": cloud_config(
        f"runcmd:\n  - sed -i 's/ no$/ yes/' {OURS}\n"
        "  - [sh, -c, 'echo PasswordAuthentication yes > /etc/ssh/sshd_config.d/0.conf']\n"),
    "a Match block of its own": cloud_config(
        "write_files:\n"
        "  - path: /etc/ssh/sshd_config.d/99-match.conf\n"
        "    content: |\n      Match all\n        PasswordAuthentication yes\n"
        "        KbdInteractiveAuthentication yes\n"),
    "sshd_config itself replaced": cloud_config(
        "write_files:\n"
        "  - path: /etc/ssh/sshd_config\n"
        "    content: |\n      PasswordAuthentication yes\n      KbdInteractiveAuthentication yes\n"
        "      Include /etc/ssh/sshd_config.d/*.conf\n      Match all\n        PasswordAuthentication yes\n"),
    "write_files and runcmd that are no lists": cloud_config("write_files: null\nruncmd: {a: b}\nssh_pwauth: true\n"),
    "ssh_pwauth on, in a MIME document's second part": (
        "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n--XYZ\n"
        "Content-Type: text/cloud-config\n\nwrite_files:\n  - path: /etc/ssh/sshd_config.d/01-a.conf\n"
        "    content: \"PasswordAuthentication yes\\n\"\n--XYZ\n"
        "Content-Type: text/cloud-config\n\n#cloud-config\nssh_pwauth: true\n--XYZ--\n"),
}


# What each hostile part did, as cloud-init carried it out: so a pass is never for want of trying.
LEFT_BEHIND = {
    "a drop-in named to sort before ours": ("sshd_config.d/00-anything.conf", "PasswordAuthentication yes\n"
                                            "KbdInteractiveAuthentication yes\n"),
    "the same, deferred to the final stage": ("sshd_config.d/00-anything.conf", "PasswordAuthentication yes\n"
                                              "KbdInteractiveAuthentication yes\n"),
    "a runcmd that edits ours": ("sshd_config.d/0.conf", "PasswordAuthentication yes\n"),
    "a Match block of its own": ("sshd_config.d/99-match.conf", "Match all\n  PasswordAuthentication yes\n"
                                 "  KbdInteractiveAuthentication yes\n"),
    "ssh_pwauth on, in a MIME document's second part": ("sshd_config.d/01-a.conf", "PasswordAuthentication yes\n"),
}


def boot(tmp_path, user_data, sshd_config=UBUNTU_SSHD_CONFIG, ssh_version=None):
    """cloud-init's first boot with `user_data` (as merge() makes it) on a scratch /etc/ssh: (the report of
    tests/cloudinit_boot.py, the scratch /etc/ssh, the commands the stub systemctl was given)."""
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", "import cloudinit"]).returncode:
        pytest.fail("Debian's cloud-init package is missing: `make deps` (tools/install-deps) installs it")
    etc_ssh, stubs, work = tmp_path / "etc-ssh", tmp_path / "bin", tmp_path / "work"
    for folder in (etc_ssh / "sshd_config.d", stubs, work):
        folder.mkdir(parents=True)
    (etc_ssh / "sshd_config").write_text(sshd_config)
    (etc_ssh / ".cloudinit-boot-sandbox").write_text("")
    stub(stubs / "systemctl", f'echo "$*" >> {tmp_path}/systemctl.log')
    if ssh_version:
        stub(stubs / "ssh", f'echo "{ssh_version}, OpenSSL 1.1.1k  25 Mar 2021" >&2')
    (tmp_path / "user-data").write_text(user_data)
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/ssh && exec "$2" "$3" "$4" "$5"', "sh",
         str(etc_ssh), SYSTEM_PYTHON, str(ROOT / "tests" / "cloudinit_boot.py"), str(tmp_path / "user-data"),
         str(work)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stdout + done.stderr
    reloads = (tmp_path / "systemctl.log").read_text() if (tmp_path / "systemctl.log").exists() else ""
    return json.loads(done.stdout.splitlines()[-1]), etc_ssh, reloads


def stub(path, body):
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def sshd_lines(etc_ssh, path, in_match=False):
    """(keyword, value, inside a Match block) in the order sshd reads them, Includes followed."""
    for raw in path.read_text().splitlines():
        words = raw.replace("=", " ").split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].lower()
        if keyword == "include":
            for pattern in words[1:]:
                pattern = pattern if pattern.startswith("/") else "/etc/ssh/" + pattern
                for found in sorted(glob.glob(str(etc_ssh) + pattern.removeprefix("/etc/ssh"))):
                    yield from sshd_lines(etc_ssh, Path(found), in_match)  # a Match in it ends with it
        elif keyword == "match":
            in_match = True
        else:
            yield keyword, words[1].lower(), in_match


def effective(etc_ssh, keyword, default="yes"):
    """What sshd would use for `keyword` on a connection every Match block applies to."""
    lines = [(value, in_match) for name, value, in_match in sshd_lines(etc_ssh, etc_ssh / "sshd_config")
             if name == keyword.lower()]
    matched = [value for value, in_match in lines if in_match]
    unmatched = [value for value, in_match in lines if not in_match]
    return (matched or unmatched or [default])[0]


def assert_password_login_off(etc_ssh):
    assert effective(etc_ssh, "PasswordAuthentication") == "no"
    assert effective(etc_ssh, "KbdInteractiveAuthentication") == "no"


@pytest.mark.parametrize("name", HOSTILE)
def test_the_platforms_settings_win_over_a_hostile_user_part(tmp_path, name):
    report, etc_ssh, reloads = boot(tmp_path, cloudinit.merge(HOSTILE[name]))
    if name in LEFT_BEHIND:
        path, content = LEFT_BEHIND[name]
        assert (etc_ssh / path).read_text() == content
    assert report["ssh_pwauth"] is False
    assert_password_login_off(etc_ssh)
    assert (etc_ssh / "sshd_config").read_text().splitlines()[0] == f"Include {OURS}"
    assert (etc_ssh / "sshd_config.d" / "00-cloudprovisioner.conf").read_text() == (
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "Match all\n    PasswordAuthentication no\n    KbdInteractiveAuthentication no\n")
    assert reloads == "try-reload-or-restart ssh.service sshd.service\n"


def test_a_friendly_user_part_still_does_what_it_says(tmp_path):
    user_data = cloud_config("write_files:\n  - path: /etc/ssh/sshd_config.d/50-mine.conf\n"
                             "    content: \"ClientAliveInterval 30\\n\"\n"
                             "runcmd:\n  - [sh, -c, 'echo ran > /etc/ssh/runcmd-ran']\n")
    report, etc_ssh, _ = boot(tmp_path, cloudinit.merge(user_data))
    assert report["failed"] == []
    assert (etc_ssh / "sshd_config.d" / "50-mine.conf").read_text() == "ClientAliveInterval 30\n"
    assert (etc_ssh / "runcmd-ran").read_text() == "ran\n"
    assert effective(etc_ssh, "ClientAliveInterval", "0") == "30"
    assert (etc_ssh / "sshd_config").read_text() == f"Include {OURS}\n" + UBUNTU_SSHD_CONFIG
    assert_password_login_off(etc_ssh)


def test_without_user_data_the_drop_in_alone_keeps_password_login_off(tmp_path):
    report, etc_ssh, _ = boot(tmp_path, cloudinit.merge(None))
    assert report == {"ssh_pwauth": False, "failed": []}
    assert (etc_ssh / "sshd_config").read_text() == UBUNTU_SSHD_CONFIG
    assert_password_login_off(etc_ssh)


def test_an_sshd_without_include_gets_the_settings_first(tmp_path):
    user_data = cloud_config("write_files:\n  - path: /etc/ssh/sshd_config\n    append: true\n"
                             "    content: \"PasswordAuthentication yes\\n\"\n")
    _, etc_ssh, _ = boot(tmp_path, cloudinit.merge(user_data), OLD_SSHD_CONFIG, ssh_version="OpenSSH_8.0p1")
    assert (etc_ssh / "sshd_config").read_text() == (
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n" + OLD_SSHD_CONFIG
        + "PasswordAuthentication yes\n")
    assert effective(etc_ssh, "PasswordAuthentication") == "no"


@pytest.mark.parametrize("text", [cloudinit.PLATFORM_CONFIG, "#cloud-config\nruncmd: [ls]\n"])
def test_our_cloud_config_parts_pass_cloud_inits_schema(tmp_path, text):
    if not shutil.which("cloud-init"):
        pytest.fail("Debian's cloud-init package is missing: `make deps` (tools/install-deps) installs it")
    import email
    document = email.message_from_string(cloudinit.merge(text)) if text != cloudinit.PLATFORM_CONFIG else None
    parts = [text] if document is None else [
        part.get_payload(decode=True).decode() for part in document.walk()
        if part.get_content_type() == "text/cloud-config"]
    for number, part in enumerate(parts):
        path = tmp_path / f"part-{number}.yaml"
        path.write_text(part)
        done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and "Valid cloud-config" in done.stdout, done.stdout + done.stderr
