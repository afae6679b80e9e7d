"""Many pending servers at once, for the monitor's scale test and benchmark.

Rows (with their create operations) are inserted in chunks, and the cloud
side is made with the sandbox's bulk knob (docloud), each droplet tagged with
its row's tag as a real create would: exactly what the monitor sees after N
creates. A test and benchmark fixture, not part of the product.
"""

import json
import urllib.request

from cloudprovisioner import ownership
from cloudprovisioner.ids import new_id

CHUNK = 1000


def pending_servers(db, config, tenant_id, count):
    """`count` pending servers of a tenant and their droplets in the sandbox (CP_DO_API_URL), tagged as
    this installation tags them; answers the server ids."""
    ids = [new_id() for _ in range(count)]
    for start in range(0, count, CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ", ".join(["(%s, %s, '', '', %s, 'nyc3', 's-1vcpu-1gb', 'ubuntu-24-04-x64', '[]', 'pending', "
                           "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"] * len(chunk))
        db.update("INSERT INTO servers (id, tenant_id, owner, description, name, region, size, image, tags, "
                  f"status, created_at, updated_at) VALUES {marks}",
                  [value for server_id in chunk for value in (server_id, tenant_id, f"web-{server_id}")])
        marks = ", ".join(["(%s, %s, 'server.create', 'server', %s, 'running', UTC_TIMESTAMP(6), "
                           "UTC_TIMESTAMP(6))"] * len(chunk))
        db.update("INSERT INTO operations (id, tenant_id, kind, target_type, target_id, status, created_at, "
                  f"updated_at) VALUES {marks}",
                  [value for server_id in chunk for value in (new_id(), tenant_id, server_id)])
    root = config.do_api_url.split("/v2/")[0]
    body = json.dumps({"count": count, "tags": [ownership.install_tag(config)],
                       "tag_each": [ownership.row_tag(config, server_id) for server_id in ids]}).encode()
    request = urllib.request.Request(root + "/_sandbox/droplets/bulk", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()
    return ids
