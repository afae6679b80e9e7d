"""docloud: a local, stateful stand-in for the DigitalOcean API v2, "the sandbox".

The demo and the end-to-end tests provision against this server on loopback
instead of the real cloud. It serves the part of API v2 that CloudProvisioner
and python-digitalocean use, shaped like DigitalOcean's own response models
(github.com/digitalocean/openapi), and keeps droplets, actions, SSH keys, tags,
VPCs and firewalls in SQLite so they survive a restart. Knobs under /_sandbox/
inject faults, tune timings, count API calls, bulk-load droplets, show what
a droplet was created with and hold its public IPv4 address back; they need no
token because the server only ever listens on loopback.

    python -m docloud --port 0 --state /tmp/sandbox.sqlite3

A development tool beside the product: cloudprovisioner never imports it and
its wheel leaves it out. Standard library only, so it starts fast and runs with
any Python 3.11+.

Modules, from the bottom up: errors, catalog (regions, sizes, images,
account), addresses (IPs, VPC ranges), store (SQLite), plumbing (requests,
replies, paging, routes), validation (shared field checks); one module per
resource family: droplets (and actions), keys, tags, vpcs, firewalls; faults
(quota, injected faults, call counts), knobs (/_sandbox/), routes (the route
tables), server (the application and its HTTP server), __main__ (the command).
"""
