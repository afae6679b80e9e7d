"""The monitor at scale: thousands of pending servers settle in one run, one API call per 200 droplets
(and one for the account's VPCs, and one for the cloud's sizes and prices, not yet cached)."""

import io

from cloudprovisioner import monitor
from devtools import bulk_servers
from tests.support import knob, make_config


def test_ten_thousand_pending_servers_settle_in_one_run_with_fifty_calls(admin, values, db, sandbox):
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    tenant = admin.get("/me").json["tenant_id"]
    bulk_servers.pending_servers(db, make_config(values), tenant, 10_000)
    knob(sandbox, "DELETE", "/_sandbox/stats")
    out = io.StringIO()
    assert monitor.run_once(make_config(values), out, io.StringIO()) == 0
    assert "10000 ready; 10000 droplets listed in 50 pages" in out.getvalue()
    stats = knob(sandbox, "GET", "/_sandbox/stats").json
    assert stats["requests"] == {"GET /v2/droplets": 50, "GET /v2/vpcs": 1, "GET /v2/sizes": 1}, stats
    assert db.one("SELECT COUNT(*) AS n FROM servers WHERE status = 'ready' AND public_ip IS NOT NULL")["n"] == 10_000
    assert db.one("SELECT COUNT(*) AS n FROM operations WHERE status = 'succeeded'")["n"] == 10_000
    assert admin.get("/servers?status=pending").json == []
