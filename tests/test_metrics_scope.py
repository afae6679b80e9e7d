"""GET /api/metrics holds every tenant's figures: only a platform admin (made by the admin command, never by
registration) and the scrape token read them; a tenant's admin, self-registered or not, gets a 403."""

from prometheus_client.parser import text_string_to_metric_families

from cloudprovisioner import admin as admin_commands
from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, make_config

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
NOT_PLATFORM = "only a platform admin may do this (metrics:read)"


def servers_by_tenant(answer):
    assert answer.status == 200, answer.body
    families = {family.name: family for family in text_string_to_metric_families(answer.body.decode())}
    return sorted((sample.labels["tenant"], sample.value) for sample in families["cloudprovisioner_servers"].samples)


def env_file(values, tmp_path):
    path = tmp_path / "cp.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return str(path)


def test_a_self_registered_admin_reads_no_metrics(admin, register):
    globex = register(tenant="Globex", email="admin@globex.test")
    assert globex.post("/servers", SERVER).status == 202

    for tenant_admin in (admin, globex):
        problem = assert_problem(tenant_admin.get("/metrics"), 403)
        assert problem["detail"] == NOT_PLATFORM
    assert admin.get("/me").json["platform_admin"] is False


def test_the_admin_command_makes_and_unmakes_a_platform_admin(admin, register, values, tmp_path, capsys):
    globex = register(tenant="Globex", email="admin@globex.test")
    assert globex.post("/servers", SERVER).status == 202
    assert admin.post("/servers", dict(SERVER, name="web-2")).status == 202
    acme_id, globex_id = admin.get("/me").json["tenant_id"], globex.get("/me").json["tenant_id"]
    config = env_file(values, tmp_path)

    assert admin_commands.main(["--config", config, "platform-admin", "Admin@Acme.test"]) == 0

    user_id = admin.get("/me").json["id"]
    assert capsys.readouterr().out == f"admin@acme.test (user {user_id}, tenant {acme_id}) is a platform admin\n"
    assert admin.get("/me").json["platform_admin"] is True
    assert servers_by_tenant(admin.get("/metrics")) == sorted([(acme_id, 1.0), (globex_id, 1.0)])
    assert_problem(globex.get("/metrics"), 403)

    assert admin_commands.main(["--config", config, "platform-admin", "admin@acme.test", "--revoke"]) == 0

    assert capsys.readouterr().out == (f"admin@acme.test (user {user_id}, tenant {acme_id}) is no longer a "
                                       "platform admin\n")
    assert assert_problem(admin.get("/metrics"), 403)["detail"] == NOT_PLATFORM


def test_the_admin_command_refuses_an_unknown_email(values, tmp_path, capsys):
    assert admin_commands.main(["--config", env_file(values, tmp_path), "platform-admin", "nobody@acme.test"]) == 1
    assert capsys.readouterr().err == "cloudprovisioner-admin: no such user\n"


def test_the_flag_without_the_admin_role_reads_nothing(admin, member, db, values, tmp_path, capsys):
    viewer = member("viewer")
    assert admin_commands.main(["--config", env_file(values, tmp_path), "platform-admin", "viewer@acme.test"]) == 0
    assert capsys.readouterr().out.endswith("their role is viewer: platform permissions also need the admin role\n")
    assert "metrics:read needs admin" in assert_problem(viewer.get("/metrics"), 403)["detail"]


def test_a_platform_admins_api_token_and_the_scrape_token_read_every_tenant(admin, register, values, db):
    globex = register(tenant="Globex", email="admin@globex.test")
    assert globex.post("/servers", SERVER).status == 202
    globex_id = globex.get("/me").json["tenant_id"]
    db.update("UPDATE users SET platform_admin = 1 WHERE email = 'admin@acme.test'")
    token = admin.post("/tokens", {"name": "prometheus"}).json["token"]
    assert servers_by_tenant(Client(admin.app, token=token).get("/metrics")) == [(globex_id, 1.0)]

    app = make_app(make_config(dict(values, CP_METRICS_TOKEN="scrape-token-0123456789abcdef")))
    assert servers_by_tenant(Client(app, token="scrape-token-0123456789abcdef").get("/metrics")) == [(globex_id, 1.0)]
