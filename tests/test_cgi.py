"""The CGI shim driven like Apache drives it: a fake CGI environment, stdin, stdout (as Trac's tests do)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cgi(env, body=b""):
    base = {"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "/api", "QUERY_STRING": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-I", str(ROOT / "cgi-bin" / "api")], input=body,
                          env={**base, **env}, capture_output=True, timeout=30)
    head, _, payload = done.stdout.partition(b"\r\n\r\n")
    return head.decode(), payload, done.stderr.decode()


def env_file(tmp_path, values):
    path = tmp_path / "cp.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return str(path)


def test_cgi_answers_a_request_from_the_database(admin, values, tmp_path):
    head, payload, _ = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers",
                                "HTTP_AUTHORIZATION": f"Bearer {admin.token}",
                                "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, values)})
    assert head.startswith("Status: 200 OK")
    assert "Content-Type: application/json" in head
    assert payload == b"[]\n"


def test_cgi_problem_for_an_unknown_server(admin, values, tmp_path):
    head, payload, _ = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers/nope",
                                "HTTP_AUTHORIZATION": f"Bearer {admin.token}",
                                "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, values)})
    assert head.startswith("Status: 404 Not Found")
    assert "application/problem+json" in head and b'"status":404' in payload.replace(b" ", b"")


def test_cgi_config_errors_go_to_stderr_not_the_client(tmp_path):
    head, payload, stderr = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers",
                                     "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, {"CP_BOGUS": "1"})})
    assert head.startswith("Status: 503")
    assert b"CP_BOGUS" not in payload
    assert "CP_BOGUS" in stderr


def test_cgi_never_takes_config_from_request_headers(admin, values, tmp_path):
    """A client's header becomes HTTP_*: it must not reach the settings."""
    head, _, _ = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers",
                          "HTTP_CP_DB_SOCKET": "/elsewhere.sock", "HTTP_AUTHORIZATION": f"Bearer {admin.token}",
                          "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, values)})
    assert head.startswith("Status: 200")


def test_cgi_without_credentials_is_401_with_a_challenge(values, tmp_path):
    head, payload, _ = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers",
                                "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, values)})
    assert head.startswith("Status: 401")
    assert 'WWW-Authenticate: Bearer realm="cloudprovisioner"' in head


def test_cgi_refuses_every_request_without_a_real_signing_key(values, tmp_path, capfd):
    short = dict(values, CP_JWT_SECRET="too-short")
    head, payload, stderr = run_cgi({"REQUEST_METHOD": "POST", "PATH_INFO": "/auth/login",
                                     "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, short)})
    assert head.startswith("Status: 503")
    assert "CP_JWT_SECRET is shorter than 32 characters" in stderr
    del short["CP_JWT_SECRET"]
    head, _, stderr = run_cgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/servers",
                               "CLOUDPROVISIONER_CONFIG": env_file(tmp_path, short)})
    assert head.startswith("Status: 503") and "CP_JWT_SECRET is not set" in stderr
