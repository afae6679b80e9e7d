"""`make demo`: the whole service on this machine, on embedded defaults.

Starts (or reuses) a private MariaDB, the local DigitalOcean-compatible API,
installs the service into the demo folder with `make install`, serves it with
Apache on 127.0.0.1:8080 using the shipped config, and runs the monitor on a
timer exactly as its cron line says (its user, its command). Everything lives
in one folder (default /var/tmp/cloudprovisioner-demo); `make demo-stop` stops it.
"""

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cloudprovisioner.config import parse_env_file  # noqa: E402
from devtools.devstack import Apache, MariaDB, Process, check_traversable, wait_for_port  # noqa: E402

CLOUD_TOKEN = "demo-token"  # the sandbox accepts only this; a real deployment sets a DigitalOcean token
MONITOR_INTERVAL = 10  # seconds; cron runs it every 60, the demo is impatient


def layout(base):
    return {"PREFIX": base / "install", "CONFDIR": base / "etc", "APACHE_CONFDIR": base / "apache-conf",
            "CRONDIR": base / "cron.d"}


def start(args):
    base = Path(args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    check_traversable(base)
    stop(args, quiet=True)
    mariadb = MariaDB(base / "db")
    mariadb.start()
    step(f"MariaDB on {mariadb.socket}")
    cloud_url = start_sandbox(base, args.cloud_port)
    step(f"local cloud API on {cloud_url}")
    smtp_port = start_mail_sink(base, args.smtp_port)
    step(f"mail sink on 127.0.0.1:{smtp_port}, writing {base / 'mail.log'}")
    dirs = layout(base)
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "install", *(f"{k}={v}" for k, v in dirs.items())],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"make install failed:\n{done.stdout}{done.stderr}")
    step(f"installed into {dirs['PREFIX']}")
    env_file = write_config(dirs["CONFDIR"] / "cloudprovisioner.env", mariadb, cloud_url, smtp_port,
                            f"http://127.0.0.1:{args.port}")
    subprocess.run([str(dirs["PREFIX"] / "bin" / "cloudprovisioner-admin"), "--config", str(env_file),
                    "migrate"], check=True, stdout=subprocess.DEVNULL)
    step("database schema up to date")
    apache = Apache(base / "apache", args.port, [dirs["APACHE_CONFDIR"] / "cloudprovisioner.conf"])
    apache.start()
    step(f"Apache on {apache.url}")
    timer = Process([sys.executable, __file__, "timer", "--dir", str(base)], None, base / "monitor.log")
    timer.start()
    (base / "timer.pid").write_text(str(timer.pid))
    step(f"monitor and mail job every {MONITOR_INTERVAL} s, as {dirs['CRONDIR'] / 'cloudprovisioner'} says")
    print(walkthrough(apache.url, base))


def start_sandbox(base, port):
    process = Process([sys.executable, "-m", "docloud", "--port", str(port),
                       "--state", str(base / "cloud.sqlite3"), "--activate-after", "10",
                       "--token", CLOUD_TOKEN], None, base / "cloud.log",
                      ready_line_prefix="sandbox listening on ", cwd=ROOT)
    line = process.start()
    (base / "cloud.pid").write_text(str(process.pid))
    return line.split()[-1]


def start_mail_sink(base, port):
    """aiosmtpd printing every message it receives: the demo's stand-in for a mail server."""
    process = Process([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                       "-c", "aiosmtpd.handlers.Debugging"], None, base / "mail.log")
    process.start()
    (base / "mail.pid").write_text(str(process.pid))
    wait_for_port("127.0.0.1", port)
    return port


def write_config(path, mariadb, cloud_url, smtp_port, public_url):
    """Fill in the demo's settings; keep the database password of an earlier run."""
    values = parse_env_file(path.read_text())
    password = values.get("CP_DB_PASSWORD") or secrets.token_urlsafe(24)
    mariadb.create_app_database("cloudprovisioner", "cloudprovisioner", password)
    values.update(CP_DB_SOCKET=mariadb.socket, CP_DB_PASSWORD=password, CP_DO_TOKEN=CLOUD_TOKEN,
                  CP_DO_API_URL=cloud_url, CP_ORPHAN_GRACE="120", CP_SMTP_HOST="127.0.0.1",
                  CP_SMTP_PORT=str(smtp_port), CP_PUBLIC_URL=public_url)
    lines = [line for line in path.read_text().splitlines()
             if line.partition("=")[0].strip() not in values]
    path.write_text("\n".join(lines + [f"{key}={value}" for key, value in values.items()]) + "\n")
    return path


def cron_jobs(cron_file):
    """[(user, command)] of the job lines in a /etc/cron.d file: the monitor and the mail job."""
    jobs = []
    for line in cron_file.read_text().splitlines():
        fields = line.split(None, 6)
        if len(fields) == 7 and not line.startswith("#"):
            jobs.append((fields[5], fields[6]))
    if not any("monitor_new_node" in command for _, command in jobs):
        raise SystemExit(f"no monitor line in {cron_file}")
    return jobs


def timer(args):
    """Run every cron line every MONITOR_INTERVAL seconds with cron's environment."""
    jobs = cron_jobs(layout(Path(args.dir))["CRONDIR"] / "cloudprovisioner")
    while True:
        for user, command in jobs:
            argv = ["/bin/sh", "-c", command]
            if os.geteuid() == 0:
                argv = ["/usr/sbin/runuser", "-u", user, "--", *argv]
            done = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"},
                                  capture_output=True, text=True)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for line in (done.stdout + done.stderr).splitlines():
                print(f"{stamp} {line}", flush=True)
        time.sleep(MONITOR_INTERVAL)


def stop(args, quiet=False):
    base = Path(args.dir).resolve()
    for name in ("timer", "cloud", "mail"):
        pid_file = base / f"{name}.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()
    if (base / "apache" / "httpd.conf").exists():
        Apache(base / "apache", args.port, []).stop()
    if (base / "db").exists():
        MariaDB(base / "db").stop()
    if not quiet:
        step(f"stopped; state kept in {base} (delete it to start afresh)")


def step(message):
    print(f"  ok  {message}", flush=True)


def walkthrough(url, base):
    api = f"{url}/api"
    return f"""
CloudProvisioner is running. Config: {base}/etc/cloudprovisioner.env
Logs: {base}/apache/error.log (API), {base}/monitor.log (monitor), {base}/cloud.log (cloud)

Try it (copy and paste; needs curl and python3):

# --- walkthrough ---
# Register a tenant; you become its admin once you verify your address. The mail carries the tenant id:
curl -s -X POST {api}/auth/register -H 'Content-Type: application/json' \
  -d '{{"tenant_name": "Demo", "name": "Dee", "email": "dee@example.test", "password": "demo password 1"}}'
grep 'Tenant id' {base}/mail.log
# Verify it: open the mail's link and press its button, or send the mail's code (this makes the tenant):
CODE=$(grep -o 'Verification code: [A-Za-z0-9_-]*' {base}/mail.log | tail -1 | cut -d' ' -f3)
curl -s -X POST {api}/verify-email -H 'Content-Type: application/json' -d '{{"token": "'$CODE'"}}'
# Log in; keep the access token (valid 15 minutes; POST /api/auth/refresh renews it):
TOKEN=$(curl -s -X POST {api}/auth/login -H 'Content-Type: application/json' \
  -d '{{"email": "dee@example.test", "password": "demo password 1"}}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
AUTH="Authorization: Bearer $TOKEN"
curl -s {api}/me -H "$AUTH"
# Add your SSH public key (servers take keys only: password login is switched off):
[ -f {base}/demo_key.pub ] || ssh-keygen -q -t ed25519 -N '' -C demo -f {base}/demo_key
KEY=$(python3 -c 'import json, sys; print(json.dumps({{"name": "demo", "public_key": open(sys.argv[1]).read()}}))' {base}/demo_key.pub \
  | curl -s -X POST {api}/ssh-keys -H "$AUTH" -H 'Content-Type: application/json' -d @- \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
# Create a VM with it: the answer is 202 with the server, still pending. Keep its id.
# It goes into your default VPC for the region, behind your default firewall (ports 22 and 80).
SERVER=$(curl -s -X POST {api}/servers -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{{"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "description": "my first server", "ssh_keys": ["'$KEY'"]}}')
echo "$SERVER"
ID=$(echo "$SERVER" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
# A dry run of the next one: what it would make, in which network, what it would cost, the quotas after it.
# Nothing is made, and the cloud is not asked:
curl -s -X POST "{api}/servers?dry_run=true" -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{{"name": "web-3", "region": "nyc3", "size": "s-1vcpu-2gb", "image": "debian-12-x64", "ttl": "2h"}}'
# Made, it expires in two hours (the owner is mailed a day before expiry, or at once when sooner, and the monitor
# deletes it then); give it a day instead:
LAB=$(curl -s -X POST {api}/servers -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{{"name": "web-3", "region": "nyc3", "size": "s-1vcpu-2gb", "image": "debian-12-x64", "ttl": "2h"}}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -s -X PATCH {api}/servers/$LAB -H "$AUTH" -H 'Content-Type: application/json' -d '{{"ttl": "1d"}}'
# The same from a plain HTML form, with tags:
curl -s -X POST {api}/servers -H "$AUTH" -d name=web-2 -d region=ams3 -d size=s-1vcpu-512mb-10gb -d image=debian-12-x64 -d tags=web,demo
# List them (filter with ?status=ready; page with ?limit=1 and the Link header):
curl -s -i '{api}/servers?limit=1' -H "$AUTH"
curl -s {api}/servers -H "$AUTH"
# The cloud boots it in 10 s, the monitor notices within another 10 s:
sleep 25
curl -s {api}/servers/$ID/status -H "$AUTH"
# What they cost this month, to date and projected to its end, by server; and the tenant's quotas:
curl -s '{api}/costs?group_by=server' -H "$AUTH"
curl -s {api}/quota -H "$AUTH"
# The network it got: your VPC in nyc3 and your default firewall.
curl -s {api}/vpcs -H "$AUTH"
curl -s {api}/firewalls -H "$AUTH"
# Publish a VM configuration for the CernVM WebAPI, then fetch it signed, as the browser extension does
# (the page's domain key must be the one GET /api/vmcp-key shows):
VMCP=$(curl -s -X POST {api}/vmcp-configs -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{{"name": "demo-vm", "secret": "change-me", "memory": 2048, "cpus": 1, "flags": 49}}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["url"])')
curl -s "{url}$VMCP?cvm_salt=$(python3 -c 'print("0" * 64)')&cvm_hostid=demo"
curl -s {api}/vmcp-key -H "$AUTH"
# Bad input gets a problem+json answer naming each field:
curl -s -X POST {api}/servers -H "$AUTH" -H 'Content-Type: application/json' -d '{{"name": "bad name!", "region": "mars"}}'
# No token, no answer:
curl -s {api}/servers
# Delete it; the monitor confirms the deletion on its next run:
curl -s -X DELETE {api}/servers/$ID -H "$AUTH"
sleep 12
curl -s {api}/servers/$ID -H "$AUTH"
# --- end ---

Stop everything: make demo-stop
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("start", "stop", "timer"))
    parser.add_argument("--dir", default="/var/tmp/cloudprovisioner-demo")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cloud-port", type=int, default=8090)
    parser.add_argument("--smtp-port", type=int, default=8025)
    args = parser.parse_args()
    {"start": start, "stop": stop, "timer": timer}[args.command](args)


if __name__ == "__main__":
    main()
