"""`make demo` on free ports, then its printed walkthrough run exactly as printed."""

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from devtools.devstack import free_port

pytestmark = pytest.mark.services  # `make demo` starts MariaDB, Apache, the local cloud API and the monitor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo():
    folder = Path(tempfile.mkdtemp(prefix="cp-demo-", dir="/tmp"))
    settings = [f"DEMO_DIR={folder}", f"DEMO_PORT={free_port()}", f"DEMO_CLOUD_PORT={free_port()}",
                f"DEMO_SMTP_PORT={free_port()}"]
    try:
        started = subprocess.run(["make", "-s", "-C", str(ROOT), "demo", *settings],
                                 capture_output=True, text=True, timeout=600)
        assert started.returncode == 0, started.stdout + started.stderr
        yield started.stdout
    finally:
        subprocess.run(["make", "-s", "-C", str(ROOT), "demo-stop", *settings],
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(folder)])


def test_the_printed_walkthrough_works_as_printed(demo):
    script = re.search(r"^# --- walkthrough ---\n(.*?)^# --- end ---$", demo, re.S | re.M).group(1)
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"Tenant id: [0-9a-f-]{36}", out)
    assert '"email":"dee@example.test"' in out and "unauthorized" in out
    assert '"status":"pending"' in out
    assert "HTTP/1.1 200 OK" in out and 'rel="next"' in out
    assert re.search(r'"status":"ready","status_reason":"","public_ip":"\d+\.\d+\.\d+\.\d+"', out)
    assert '"errors":{' in out.replace(" ", "")
    assert '"name":"default-nyc3"' in out and '"name":"default","default":true' in out
    assert re.search(r'"ssh_key_ids":\["[0-9a-z]{26}"\]', out)
    assert re.search(r'"name":"demo-vm","secret":"change-me".*"signature":"[A-Za-z0-9+/=]{300,}"', out)
    assert '"source":"platform","public_key_base64":"MII' in out
    assert '"check_mode":true' in out and '"would_be_made":false' in out and '"to_month_end":' in out
    assert re.search(r'"name":"web-3".*"expires_at":"20\d\d-', out)
    assert re.search(r'"projected":\d', out) and '"quotas":{"servers":{"limit":25,"used":3}' in out
    assert out.rstrip().splitlines()[-1].find('"status":"deleted"') > 0
