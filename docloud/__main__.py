"""`python -m docloud`: serve the local cloud API until SIGTERM or Ctrl-C.

    python -m docloud --port 0 --state /tmp/sandbox.sqlite3 [--activate-after 5] [--token T]

Prints "sandbox listening on http://HOST:PORT/v2/" once it accepts
connections (harnesses wait for that line); exits 2 when it cannot start
(not a loopback address, port taken, unusable --state file).
"""

import argparse
import signal
import sqlite3
import sys

from .server import serve


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m docloud",
                                     description="Local DigitalOcean API v2 sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--state", required=True, help="SQLite file holding the state")
    parser.add_argument("--activate-after", type=float, default=5.0, metavar="SECONDS",
                        help="seconds a new droplet stays 'new' (default 5)")
    parser.add_argument("--token", help="the only accepted bearer token (default: any)")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(0)  # unwinds serve_forever, so serve() closes the database


def main(argv=None):
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        serve(args.host, args.port, args.state, args.activate_after, args.token)
    except (ValueError, OSError, sqlite3.Error) as error:  # not loopback, port taken, bad --state
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
