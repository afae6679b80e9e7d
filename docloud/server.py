"""The application and its HTTP server: Sandbox routes a request to its
handler with authentication, quota headers, faults and call counting for
/v2; SandboxServer serves it over HTTP/1.1 keep-alive on loopback only."""

import hmac
import ipaddress
import json
import socket
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .errors import ApiError, not_found
from .faults import Faults, RateLimiter, Stats, fault_reply
from .plumbing import JSON_TYPE, Request, error_reply, find_route
from .routes import API_ROUTES, KNOB_ROUTES
from .store import Store


class Sandbox:
    """Routes a request to its handler, with auth, quota headers, faults and
    call counting for /v2."""

    def __init__(self, store, activate_after=5.0, token=None):
        self.store = store
        self.activate_after = float(activate_after)
        self.token = token
        self.limiter = RateLimiter()
        self.faults = Faults()
        self.stats = Stats()

    def handle(self, method, target, headers, body, base_url):
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        req = Request(method, path, query, body, base_url)
        if path == "/v2" or path.startswith("/v2/"):
            return self._api(req, headers.get("Authorization") or "")
        return self._run(*find_route(KNOB_ROUTES, method, path), req)

    def _api(self, req, authorization):
        quota = self.limiter.hit(time.time())
        route, params, path_known = find_route(API_ROUTES, req.method, req.path)
        self.stats.count(f"{req.method} {route.template if route else req.path}")
        reply = self._injected_fault(req)
        if reply is None and not self._authenticated(authorization):
            reply = error_reply(ApiError(401, "unauthorized", "Unable to authenticate you"))
        if reply is None:
            reply = self._run(route, params, path_known, req)
        for name, value in quota.items():
            reply.headers.setdefault(name, value)
        return reply

    def _injected_fault(self, req):
        rule = self.faults.take(req.method, req.path)
        if rule is None:
            return None
        time.sleep(rule["delay"])
        return None if rule["status"] is None else fault_reply(rule)

    def _authenticated(self, authorization):
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.token is None or hmac.compare_digest(token.encode(), self.token.encode())

    def _run(self, route, params, path_known, req):
        try:
            if route is None:
                if path_known:
                    raise ApiError(405, "method_not_allowed",
                                   f"{req.method} is not allowed on {req.path}.")
                raise not_found()
            req.params = params
            return route.handler(self, req)
        except ApiError as error:
            return error_reply(error)
        except Exception:  # a bug: answer like DO's 500, details to stderr
            traceback.print_exc()
            return error_reply(ApiError(500, "server_error",
                                        "Server was unable to give you a response."))


class _HTTPHandler(BaseHTTPRequestHandler):
    # Keep-alive, so creating thousands of droplets one by one does not cost a
    # TCP handshake each; idle connections are dropped after `timeout`. Headers
    # and body go out as separate writes: without TCP_NODELAY, Nagle's
    # algorithm meets the client's delayed ACK and every reply waits ~40 ms.
    protocol_version = "HTTP/1.1"
    timeout = 120
    disable_nagle_algorithm = True
    server_version = "cloudprovisioner-sandbox"

    def do_GET(self):
        self._respond()

    def do_POST(self):
        self._respond()

    def do_PUT(self):
        self._respond()

    def do_DELETE(self):
        self._respond()

    def do_PATCH(self):
        self._respond()

    def _respond(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = self.headers.get("Host") or ":".join(map(str, self.server.server_address[:2]))
        self._send(self.server.sandbox.handle(self.command, self.path, self.headers, body,
                                              f"http://{host}"))

    def _send(self, reply):
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        data = b""
        if reply.status != 204:
            data = json.dumps(reply.payload).encode()
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        # No access log: harnesses may pipe our output without reading it, and
        # a line per request would fill the pipe and stall the server.
        pass


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # never wait for idle keep-alive connections on exit
    request_queue_size = 128  # the default 5 refuses bursts of parallel clients

    def __init__(self, address, sandbox):
        super().__init__(address, _HTTPHandler)
        self.sandbox = sandbox

    def handle_error(self, request, client_address):
        # Clients dropping keep-alive connections, or hanging up on a delayed
        # reply after their timeout, is routine: no traceback for that.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def require_loopback(host):
    # The knobs have no authentication, so the sandbox must never be
    # reachable from another machine.
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise ValueError(f"the sandbox only listens on loopback, not on {host}")


def build_server(host, port, state_path, activate_after=5.0, token=None):
    """A bound, not yet serving, SandboxServer."""
    require_loopback(host)
    return SandboxServer((host, port), Sandbox(Store(state_path), activate_after, token))


def serve(host, port, state_path, activate_after=5.0, token=None):
    """Serve until interrupted; print the ready line harnesses wait for."""
    server = build_server(host, port, state_path, activate_after, token)
    bound_host, bound_port = server.server_address[:2]
    print(f"sandbox listening on http://{bound_host}:{bound_port}/v2/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.sandbox.store.close()
