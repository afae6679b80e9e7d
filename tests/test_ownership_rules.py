"""What the monitor takes for this installation's (ownership: install_id, row_id_in, tenant_in, cloud_name)
and how old it takes a droplet to be (monitor._age): pure functions over a Config, no services."""

from datetime import datetime

import pytest

from cloudprovisioner import monitor, ownership
from cloudprovisioner.config import Config, ConfigError

INSTALL = "abcd1234"
ROW = "01hzy3k8m6q9r2t4v5w7x8y9z0"
OTHER_ROW = "01hzy3k8m6q9r2t4v5w7x8y9z1"
TENANT = "02abcdefghjkmnpqrstvwxyz12"
BAD_INSTALL = ("CP_INSTALL_ID must be 8-32 lower-case letters and digits "
               "(cloudprovisioner-admin ensure-secret makes one)")


def config(**values):
    return Config({"CP_INSTALL_ID": INSTALL, **values})


# --- install_id -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abcd1234", "a" * 32, "12345678", "0a1b2c3d4e5f"])
def test_install_id(value):
    assert ownership.install_id(config(CP_INSTALL_ID=value)) == value


@pytest.mark.parametrize("value", ["abcd123", "a" * 33, "ABCD1234", "abcd-1234", "abcd_1234", " abcd1234",
                                   "abcd1234\n", "\u00e9bcd1234"])
def test_install_id_refuses_what_is_not_8_to_32_lowercase_letters_and_digits(value):
    with pytest.raises(ConfigError) as error:
        ownership.install_id(config(CP_INSTALL_ID=value))
    assert str(error.value) == BAD_INSTALL


def test_install_id_must_be_set():
    with pytest.raises(ConfigError) as error:
        ownership.install_id(Config({}))
    assert str(error.value) == "CP_INSTALL_ID is not set"


# --- row_id_in --------------------------------------------------------------------------------------

def test_row_id_in_finds_the_row_tag_of_this_installation():
    tags = ["web", "cloudprovisioner", "cloudprovisioner:abcd1234", f"cloudprovisioner:abcd1234:tenant:{TENANT}",
            "cloudprovisioner:abcd1234:fw:xyz", f"cloudprovisioner:abcd1234:{ROW}",
            f"cloudprovisioner:abcd1234:{OTHER_ROW}"]
    assert ownership.row_id_in(config(), tags) == ROW


@pytest.mark.parametrize("tags", [
    [],
    ["web"],
    ["cloudprovisioner:abcd1234"],
    [f"cloudprovisioner:{ROW}"],  # the legacy form is read only when asked for
    [f"cloudprovisioner:zzzz9999:{ROW}"],  # another installation's row, a prefix of the same length
    [f"other:abcd1234:{ROW}"],
    [f"cloudprovisioner:abcd1234:{ROW}x"],
    [f"cloudprovisioner:abcd1234:{ROW.upper()}"],
    [f"cloudprovisioner:abcd1234{ROW}"],
    [f"cloudprovisioner:abcd1234::{ROW}"],
    [f"xcloudprovisioner:abcd1234:{ROW}"],
], ids=["none", "user-tag", "install-tag", "legacy", "other-install", "other-platform", "too-long", "upper",
        "no-colon", "double-colon", "prefixed"])
def test_row_id_in_finds_nothing_else(tags):
    assert ownership.row_id_in(config(), tags) is None


def test_row_id_in_legacy_reads_the_form_without_an_installation():
    assert ownership.row_id_in(config(), ["web", f"cloudprovisioner:{ROW}"], legacy=True) == ROW
    assert ownership.row_id_in(config(), [f"cloudprovisioner:abcd1234:{ROW}"], legacy=True) is None
    assert ownership.row_id_in(config(), [], legacy=True) is None


def test_row_id_in_follows_the_platform_tag():
    custom = config(CP_PLATFORM_TAG="acme")
    assert ownership.row_id_in(custom, [f"cloudprovisioner:abcd1234:{ROW}", f"acme:abcd1234:{OTHER_ROW}"]) == OTHER_ROW
    assert ownership.row_id_in(custom, [f"cloudprovisioner:{ROW}", f"acme:{OTHER_ROW}"], legacy=True) == OTHER_ROW


# --- tenant_in --------------------------------------------------------------------------------------

def test_tenant_in_reads_the_tenant_tag():
    tags = ["web", f"cloudprovisioner:abcd1234:{ROW}", f"cloudprovisioner:abcd1234:tenant:{TENANT}",
            "cloudprovisioner:abcd1234:tenant:second"]
    assert ownership.tenant_in(config(), tags) == TENANT
    assert ownership.tenant_in(config(), ["cloudprovisioner:abcd1234:tenant:"]) == ""


@pytest.mark.parametrize("tags", [
    [], ["web"], [f"cloudprovisioner:zzzz9999:tenant:{TENANT}"], [f"cloudprovisioner:tenant:{TENANT}"],
    [f"cloudprovisioner:abcd1234:tenants:{TENANT}"], [f"cloudprovisioner:abcd1234:{TENANT}"],
])
def test_tenant_in_finds_nothing_else(tags):
    assert ownership.tenant_in(config(), tags) is None


# --- cloud_name -------------------------------------------------------------------------------------

def test_cloud_name():
    assert ownership.cloud_name(config(), "vpc", ROW) == f"cloudprovisioner-abcd1234-vpc-{ROW}"
    assert ownership.cloud_name(config(), "firewall", "x") == "cloudprovisioner-abcd1234-firewall-x"
    assert (ownership.cloud_name(config(CP_PLATFORM_TAG="my_plat:x"), "vpc", "r")
            == "my-plat-x-abcd1234-vpc-r")


def test_cloud_name_needs_a_good_installation_id():
    with pytest.raises(ConfigError) as error:
        ownership.cloud_name(config(CP_INSTALL_ID="BAD"), "vpc", ROW)
    assert str(error.value) == BAD_INSTALL


# --- monitor._age -----------------------------------------------------------------------------------

class FrozenDatetime(datetime):
    """datetime whose now() is 2026-11-30 12:00:00 (in the zone asked for; naive if none, as datetime does)."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 11, 30, 12, 0, 0, tzinfo=tz)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(monitor, "datetime", FrozenDatetime)


@pytest.mark.parametrize("created_at, age", [
    ("2026-11-30T11:00:00Z", 3600.0),
    ("2026-11-30T12:00:00Z", 0.0),
    ("2026-11-30T11:59:59Z", 1.0),
    ("2026-11-29T12:00:00Z", 86400.0),
    ("2026-01-02T03:04:05Z", 28716955.0),
    ("2026-11-30T12:00:30Z", -30.0),
])
def test_age_is_seconds_since_the_cloud_time(frozen, created_at, age):
    assert monitor._age(created_at) == age


@pytest.mark.parametrize("created_at", [None, "", "yesterday", "2026-11-30 11:00:00", "2026-11-30T11:00:00",
                                        "2026-11-30T11:00:00.123Z", "2026-11-30T11:00:00+00:00", 1764500000])
def test_an_unknown_time_counts_as_new(frozen, created_at):
    assert monitor._age(created_at) == 0


def test_age_uses_the_real_clock():
    # Nearly seven years before this was written (2026-11-30): more than six years of seconds.
    assert monitor._age("2020-01-01T00:00:00Z") > 6 * 365 * 86400
