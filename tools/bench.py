"""`make bench`: requests/s through the real Apache, compared in one run; then the monitor at scale.

Installs the service into a scratch prefix, creates an admin, stores 100
servers in its tenant, and drives Apache with wrk: authenticated
GET /api/servers (with an access token, then with an API token) and the
VMCP responder (signing with the platform's key, then with a tenant's) against
a trivial Python CGI script that only prints JSON (same interpreter, same
flags). The ratio is what matters: absolute figures depend on the machine,
the ratio on what our code costs.

Then one monitor run (the installed cron command) over 100, 1,000 and
10,000 pending servers whose droplets are active: its time and its cloud API
calls, counted by the sandbox.
"""

import argparse
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.devstack import Apache, MariaDB, Process  # noqa: E402

TRIVIAL = """#!{python} -I
import json
import sys
sys.stdout.write("Content-Type: application/json\\r\\n\\r\\n" + json.dumps({{"ok": True}}))
"""


def install(base, mariadb, cloud_url):
    dirs = {"PREFIX": base / "install", "CONFDIR": base / "etc", "APACHE_CONFDIR": base / "apache-conf",
            "CRONDIR": base / "cron.d"}
    subprocess.run(["make", "-s", "-C", str(ROOT), "install", *(f"{k}={v}" for k, v in dirs.items())],
                   check=True, capture_output=True)
    password = secrets.token_urlsafe(18)
    mariadb.create_app_database("cp_bench", "cp_bench", password)
    env_file = dirs["CONFDIR"] / "cloudprovisioner.env"
    with env_file.open("a") as handle:
        handle.write(f"CP_DB_SOCKET={mariadb.socket}\nCP_DB_NAME=cp_bench\nCP_DB_USER=cp_bench\n"
                     f"CP_DB_PASSWORD={password}\nCP_DO_TOKEN=bench\nCP_DO_API_URL={cloud_url}\n")
    subprocess.run([str(dirs["PREFIX"] / "bin" / "cloudprovisioner-admin"), "--config", str(env_file),
                    "migrate"], check=True, capture_output=True)
    return dirs


def create_admin(dirs, base):
    password = base / "password"
    password.write_text("bench password 123\n")
    subprocess.run([str(dirs["PREFIX"] / "bin" / "cloudprovisioner-admin"), "--config",
                    str(dirs["CONFDIR"] / "cloudprovisioner.env"), "create-admin", "--email", "bench@bench.test",
                    "--name", "Bench", "--password-file", str(password)], check=True, capture_output=True)


def credentials(url):
    """An access token from a real login, and an API token made with it."""
    login = post(url + "/api/auth/login", {"email": "bench@bench.test", "password": "bench password 123"})
    access = login["access_token"]
    api_token = post(url + "/api/tokens", {"name": "bench"}, access)["token"]
    return access, api_token


def post(url, body, token=None):
    import urllib.request
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as answer:
        text = answer.read()
        return json.loads(text) if text else None


def seed(mariadb, count):
    rows = ",".join(
        f"('{i:026d}', (SELECT id FROM cp_bench.tenants LIMIT 1), 'bench', 'server {i}', 'web-{i}', 'nyc3', "
        "'s-1vcpu-1gb', 'ubuntu-24-04-x64', '[]', "
        f"{1000 + i}, 'ready', '192.0.2.{i % 250}', '10.0.0.{i % 250}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), "
        "UTC_TIMESTAMP(6))" for i in range(count))
    mariadb.root_sql("DELETE FROM cp_bench.servers; INSERT INTO cp_bench.servers (id, tenant_id, owner, description, "
                     "name, region, size, image, tags, instance_id, status, public_ip, private_ip, "
                     f"created_at, updated_at, ready_at) VALUES {rows}")


def trivial_site(base, python):
    folder = base / "trivial"
    folder.mkdir(mode=0o755)
    script = folder / "trivial"
    script.write_text(TRIVIAL.format(python=python))
    script.chmod(0o755)
    conf = base / "trivial.conf"
    conf.write_text(f"ScriptAlias /trivial {script}\n<Directory {folder}>\n    Options +ExecCGI\n"
                    "    Require all granted\n</Directory>\n")
    return conf


def wrk(url, seconds, connections, token=None):
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", *header, url],
                          capture_output=True, text=True, check=True)
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"{url} answered errors:\n{done.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--scale", type=int, nargs="*", default=[100, 1000, 10000],
                        help="pending servers for the monitor runs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cp-bench-", dir="/tmp"))
    base.chmod(0o755)
    services = []
    try:
        mariadb = MariaDB(base / "db")
        mariadb.start()
        services.append(mariadb)
        cloud = Process([sys.executable, "-m", "docloud", "--port", "0", "--state",
                         str(base / "cloud.sqlite3")], None, base / "cloud.log",
                        ready_line_prefix="sandbox listening on ", cwd=ROOT)
        cloud_url = cloud.start().split()[-1]
        services.append(cloud)
        dirs = install(base, mariadb, cloud_url)
        create_admin(dirs, base)
        seed(mariadb, args.servers)
        apache = Apache(base / "apache", 0, [dirs["APACHE_CONFDIR"] / "cloudprovisioner.conf",
                                             trivial_site(base, dirs["PREFIX"] / "venv" / "bin" / "python3")])
        apache.start()
        services.append(apache)
        report(apache.url, args)
        monitor_scale(dirs, cloud_url, args.scale)
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(base, ignore_errors=True)


def report(url, args):
    access, api_token = credentials(url)
    targets = {"trivial Python CGI (prints JSON)": (url + "/trivial", None),
               f"GET /api/servers, access token ({args.servers} stored, 50 a page)": (url + "/api/servers", access),
               "GET /api/servers, API token": (url + "/api/servers", api_token)}
    config = post(url + "/api/vmcp-configs", {"name": "bench-vm", "secret": "bench", "memory": 2048, "cpus": 2}, access)
    responder = f"{url}/vmcp/{config['id']}?cvm_salt={'s' * 64}&cvm_hostid=bench"
    targets["VMCP responder, platform key (read from its file)"] = (responder, None)
    for target, token in targets.values():  # warm caches (page cache, .pyc, MariaDB buffer pool)
        wrk(target, 2, args.connections, token)
    rates = {name: wrk(target, args.seconds, args.connections, token) for name, (target, token) in targets.items()}
    post(url + "/api/vmcp-key", {"generate": True}, access)
    wrk(responder, 2, args.connections)
    rates["VMCP responder, tenant key (decrypted from the DB)"] = wrk(responder, args.seconds, args.connections)
    trivial = next(iter(rates.values()))
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s through Apache (CGI), one run:")
    for name, rate in rates.items():
        print(f"  {name:<60} {rate:8.1f} requests/s   ratio {rate / trivial:.2f}")
    print(json.dumps({name: round(rate, 1) for name, rate in rates.items()}))


def monitor_scale(dirs, cloud_url, sizes):
    from cloudprovisioner import config as configuration
    from cloudprovisioner.db import Database
    from devtools import bulk_servers
    env_file = dirs["CONFDIR"] / "cloudprovisioner.env"
    config = configuration.load(path=str(env_file))
    db = Database(config)
    tenant = db.one("SELECT id FROM tenants LIMIT 1")["id"]
    root = cloud_url.split("/v2/")[0]
    print("monitor: one run of the installed cron command over N pending servers with active droplets:")
    for size in sizes:
        db.update("DELETE FROM operations")
        db.update("DELETE FROM servers")
        post(root + "/_sandbox/reset", {})
        post(root + "/_sandbox/config", {"activate_after": 0})
        bulk_servers.pending_servers(db, config, tenant, size)
        knob_delete(root + "/_sandbox/stats")
        started = time.monotonic()
        done = subprocess.run([str(dirs["PREFIX"] / "monitor" / "monitor_new_node"), "--config", str(env_file)],
                              capture_output=True, text=True)
        seconds = time.monotonic() - started
        calls = get(root + "/_sandbox/stats")["total"]
        ready = db.one("SELECT COUNT(*) AS n FROM servers WHERE status = 'ready'")["n"]
        print(f"  {size:>6} servers: {seconds:6.2f} s, {calls:>3} API calls, {ready} ready, exit {done.returncode}")
    db.close()


def get(url):
    import urllib.request
    with urllib.request.urlopen(url) as answer:
        return json.load(answer)


def knob_delete(url):
    import urllib.request
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE")) as answer:
        answer.read()


if __name__ == "__main__":
    main()
