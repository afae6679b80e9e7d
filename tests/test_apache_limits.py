"""The shipped Apache config (apache/cloudprovisioner.conf) as the tests' Apache runs it (devtools/devstack.py
includes the installed copy): slow clients are cut off, only configuration ids reach the VMCP responder, the
request log leaves query strings out, the error log holds no AH01630 line per request, and a logged 5xx
names its reason.
"""

import socket
import threading
import time
from urllib.parse import urlsplit

from tests.support import assert_problem, http, installed_settings

# More slow clients than the tests' Apache has workers (MaxRequestWorkers 50 in devtools/devstack.py).
SLOW_BODIES = 50
SLOW_HEADERS = 10
DRIBBLE_EVERY = 1.0  # seconds between two bytes of a slow client: far below any rate Apache should wait for
GIVE_UP = 90  # seconds: the slow clients stop by themselves after this, whatever Apache does
HEALTH_TIMEOUT = 45  # the read timeouts cut a slow client off after 10-20 s; without them it never is
A_CONFIG_ID = "01m84c81jh0k8vfrj9szp66m36"
SALT = "a1" * 32


def address(apache):
    parts = urlsplit(apache.url)
    return parts.hostname, parts.port


class SlowClients:
    """Clients that start a request and then send one byte a second, in a thread of their own, until Apache
    closes the connection or GIVE_UP seconds have passed; `answers` holds what Apache sent each before it
    closed (b"" for a plain close), None for one still open."""

    def __init__(self, apache):
        host, port = address(apache)
        self.sockets = []
        for number in range(SLOW_BODIES + SLOW_HEADERS):
            sock = socket.create_connection((host, port), timeout=5)
            if number < SLOW_BODIES:
                sock.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 4000\r\n\r\n{")
            else:
                sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            self.sockets.append(sock)
        self.answers = [None] * len(self.sockets)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self):
        deadline = time.monotonic() + GIVE_UP
        while not self.stop.is_set() and time.monotonic() < deadline and None in self.answers:
            for number, sock in enumerate(self.sockets):
                if self.answers[number] is None:
                    self.answers[number] = self._one_byte(sock)
            self.stop.wait(DRIBBLE_EVERY)

    @staticmethod
    def _one_byte(sock):
        """None while Apache keeps reading; what it answered once it has closed the connection."""
        try:
            received = sock.recv(65536)
        except BlockingIOError:
            received = None
        except OSError:
            return b""
        if received is not None:
            return received + _rest(sock)
        try:
            sock.send(b" ")
        except BlockingIOError:
            pass  # Apache stopped reading, its buffer is full: the next round sees its answer or its close
        except OSError:
            return b""
        return None

    def wait(self):
        self.thread.join(GIVE_UP + 10)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()


def _rest(sock):
    """Whatever else Apache sent before closing."""
    sock.settimeout(2)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def test_slow_clients_are_cut_off_and_health_still_answers(apache):
    slow = SlowClients(apache)
    try:
        health = http("GET", apache.url + "/health", timeout=HEALTH_TIMEOUT)
        # The service's report, whatever it says of the service (503 when its schema is not the code's).
        assert health.status in (200, 503) and "checks" in health.json
        slow.wait()
        still_open = [number for number, answer in enumerate(slow.answers) if answer is None]
        assert still_open == []
        # Apache's own answer to a request it stopped waiting for, a slow body's included (the CGI script's
        # answer to a body cut short never gets out).
        assert {answer.split(b"\r\n")[0] for answer in slow.answers} == {b"HTTP/1.1 408 Request Timeout"}
    finally:
        slow.close()


def error_log_after(apache, offset):
    return apache.error_log()[offset:]


def test_api_requests_leave_no_client_denied_lines(apache):
    before = len(apache.error_log())
    for path in ("/api/servers", "/api/me", "/api/health", "/api/version", "/api/openapi.json",
                 "/api/vmcp-configs/" + A_CONFIG_ID, "/api/auth/login", "/health",
                 f"/vmcp/{A_CONFIG_ID}?cvm_salt={SALT}", f"/cgi-bin/vmcp?config={A_CONFIG_ID}&cvm_salt={SALT}"):
        assert http("GET", apache.url + path, timeout=30).content_type.startswith("application/")
    assert http("POST", apache.url + "/api/auth/login", {"email": "a@b.test", "password": "x" * 12},
                timeout=30).status == 401
    logged = error_log_after(apache, before)
    assert "AH01630" not in logged
    assert "client denied" not in logged


def test_only_configuration_ids_reach_the_vmcp_responder(apache):
    service = http("GET", f"{apache.url}/vmcp/{A_CONFIG_ID}?cvm_salt={SALT}", timeout=30)
    assert_problem(service, 404)  # the service's own answer: no such configuration
    for path in ("/vmcp/not-an-id", "/vmcp/" + "i" * 26, "/vmcp/" + A_CONFIG_ID + "/x", "/vmcp/",
                 "/vmcp/" + A_CONFIG_ID.upper()):
        answer = http("GET", apache.url + path, timeout=30)
        # Apache's own page, the script never ran: 404 under a granted DocumentRoot, 403 under the tests'.
        assert answer.status in (403, 404) and answer.content_type.startswith("text/html"), path


def test_the_request_log_leaves_query_strings_out(apache):
    before = apache.access_log.read_text() if apache.access_log.exists() else ""
    http("GET", f"{apache.url}/vmcp/{A_CONFIG_ID}?cvm_salt={SALT}&cvm_hostid=host-1", timeout=30)
    http("GET", f"{apache.url}/cgi-bin/vmcp?config={A_CONFIG_ID}&cvm_salt={SALT}&cvm_hostid=host-2", timeout=30)
    logged = _settled_log(apache, before, 2)
    assert f'"GET /vmcp/{A_CONFIG_ID} HTTP/1.1" 404' in logged
    assert '"GET /cgi-bin/vmcp HTTP/1.1" 404' in logged
    for secret in (SALT, "cvm_salt", "host-1", "host-2", "config="):
        assert secret not in logged


def _settled_log(apache, before, lines):
    """The request log's new lines once `lines` of them are written (Apache writes after answering)."""
    deadline = time.monotonic() + 10
    while True:
        text = apache.access_log.read_text()[len(before):]
        if text.count("\n") >= lines or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_a_logged_5xx_names_its_reason(apache, installed):
    before = len(apache.error_log())
    with installed_settings(installed, CP_DB_SOCKET="/nonexistent/mysqld.sock",
                            CP_DB_CONNECT_TIMEOUT="1"):
        answer = http("POST", apache.url + "/api/auth/login", {"email": "a@b.test", "password": "x" * 12},
                      timeout=30)
    problem = assert_problem(answer, 503)
    request_id = problem["instance"].removeprefix("urn:request:")
    logged = error_log_after(apache, before)
    assert f"[{request_id}] 503 database-unavailable POST /api/auth/login" in logged


# --- Apache's own answers ---

def raw_answer(apache, request):
    """Apache's status and header lines (each as sent, lower-cased) for one raw request."""
    with socket.create_connection(address(apache), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return int(head[0].split()[1]), [line.lower() for line in head[1:]]


NOSNIFF = "x-content-type-options: nosniff"


def test_apaches_own_answers_are_nosniff_and_trace_is_refused(apache):
    """What Apache answers itself (the shipped file, not the script): a TRACE, a header too large, a path that
    maps to nothing, an id-less /vmcp/ path. Without the file's TraceEnable a TRACE echoes the request back."""
    host = b"Host: 127.0.0.1\r\n"
    requests = {
        "trace": b"TRACE /api/servers HTTP/1.1\r\n" + host + b"Cookie: secret\r\nConnection: close\r\n\r\n",
        "oversized header": b"GET /api/health HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 9000
                            + b"\r\nConnection: close\r\n\r\n",
        "unmapped": b"GET /etc/passwd HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
        "not an id": b"GET /vmcp/not-an-id HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n",
    }
    answers = {name: raw_answer(apache, request) for name, request in requests.items()}
    # 403 for what maps to nothing: the tests' DocumentRoot is denied (under a granted one, 404).
    assert {name: status for name, (status, _) in answers.items()} == {
        "trace": 405, "oversized header": 400, "unmapped": 403, "not an id": 403}
    assert {name: headers.count(NOSNIFF) for name, (_, headers) in answers.items()} == dict.fromkeys(answers, 1)


def test_the_scripts_answers_carry_nosniff_once(apache):
    """The script sets the header itself; Apache's copy replaces it rather than repeating it."""
    for request in (b"GET /api/health HTTP/1.1\r\n", b"GET /api/nowhere HTTP/1.1\r\n"):
        status, headers = raw_answer(apache, request + b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status in (200, 404) and headers.count(NOSNIFF) == 1, headers
