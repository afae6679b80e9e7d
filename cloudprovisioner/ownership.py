"""What this installation owns in a cloud account, and how it tells.

Several installations may share one cloud account (staging and production),
and a database may be restored from an old backup. So every tag and cloud
name the platform makes carries the installation's id (CP_INSTALL_ID, made
once by `cloudprovisioner-admin ensure-secret`), and the row's id where there
is a row:

    droplet tags    <platform>:<install>              the installation's droplets
                    <platform>:<install>:<server id>  the row it was made for
                    <platform>:<install>:tenant:<id>  its tenant (what `adopt` reads back)
                    <platform>:<install>:fw:<id>      a firewall it is behind
                    <platform>:<install>:t:<tenant>:<tag>  a tenant's own tag, for firewall rules
    VPC name        <platform>-<install>-vpc-<row id>
    firewall name   <platform>-<install>-firewall-<row id>
    account key     <platform>-<install>-<fingerprint hex>

Objects made before installation ids existed carry the same names without the
`<install>` part (the `legacy_*` forms); the monitor takes such an object over
only when a row of this database explains it.
"""

import re

from .config import ConfigError

INSTALL_ID_PATTERN = re.compile(r"[a-z0-9]{8,32}")
TAG_PATTERN = r"[a-zA-Z0-9_\-:]+"  # the cloud's rule for tags


def install_id(config):
    value = config.get("CP_INSTALL_ID")
    if not INSTALL_ID_PATTERN.fullmatch(value):
        raise ConfigError("CP_INSTALL_ID must be 8-32 lower-case letters and digits "
                          "(cloudprovisioner-admin ensure-secret makes one)")
    return value


def install_tag(config):
    """The tag every droplet of this installation carries (and the one the monitor lists by)."""
    return f"{config.platform_tag}:{install_id(config)}"


def row_tag(config, server_id):
    """The tag that ties a droplet to its row."""
    return f"{install_tag(config)}:{server_id}"


def tenant_tag(config, tenant_id):
    return f"{install_tag(config)}:tenant:{tenant_id}"


def firewall_tag(config, firewall_id):
    """The cloud tag a firewall is attached to; servers carry it to be covered."""
    return f"{install_tag(config)}:fw:{firewall_id}"


def scoped_tag(config, tenant_id, tag):
    """The cloud tag standing for a tenant's own tag in firewall rules: all tenants share one cloud
    account, so a bare `web` would also match another tenant's `web` servers."""
    return f"{install_tag(config)}:t:{tenant_id}:{tag}"


def row_id_in(config, tags, legacy=False):
    """The server row id a droplet's tags name, or None."""
    from .ids import looks_like_id
    prefix = (legacy_prefix(config) if legacy else install_tag(config)) + ":"
    return next((tag[len(prefix):] for tag in tags
                 if tag.startswith(prefix) and looks_like_id(tag[len(prefix):])), None)


def tenant_in(config, tags):
    prefix = tenant_tag(config, "")
    return next((tag[len(prefix):] for tag in tags if tag.startswith(prefix)), None)


def _name_part(config):
    return re.sub(r"[^a-zA-Z0-9.-]", "-", config.platform_tag)


def cloud_prefix(config, kind):
    """`<platform>-<install>-<kind>-`: what every VPC or firewall name of ours starts with."""
    return f"{_name_part(config)}-{install_id(config)}-{kind}-"


def cloud_name(config, kind, row_id):
    """A name the cloud accepts and a lost create is found again by."""
    return f"{cloud_prefix(config, kind)}{row_id}"


def key_name(config, fingerprint):
    return f"{_name_part(config)}-{install_id(config)}-{fingerprint.replace(':', '')}"


def user_tag(config):
    """A tag a user may set: the cloud's tag rules, at most 64 characters, not the platform's own.

    The default platform tag is reserved too, whatever this installation's is: a tag like
    `cloudprovisioner:<install id>` on a user's server would make another installation in the same
    account take it for its own.
    """
    from .config import DEFAULTS
    from .validation import text
    check_pattern = text(64, TAG_PATTERN, "tags may hold only letters, digits, '_', '-' and ':'",
                         allow_empty=False)
    reserved = {config.platform_tag.lower(), DEFAULTS["CP_PLATFORM_TAG"]}

    def check(value):
        value = check_pattern(value)
        lowered = value.lower()
        taken = next((tag for tag in reserved if lowered == tag or lowered.startswith(tag + ":")), None)
        if taken:
            raise ValueError(f"tags starting with {taken!r} are reserved")
        return value
    return check


# --- the forms used before installation ids, read only to take those objects over ---

def legacy_prefix(config):
    return config.platform_tag


def legacy_cloud_name(config, kind, row_id):
    return f"{_name_part(config)}-{kind}-{row_id}"


def legacy_tag_forms(config, tenant_id, tags):
    """The tags a droplet made before installation ids carries, each mapped to today's form."""
    from .ids import looks_like_id
    old, new = legacy_prefix(config) + ":", install_tag(config) + ":"
    forms = {}
    for tag in tags:
        if not tag.startswith(old) or tag.startswith(new) or tag == install_tag(config):
            continue
        rest = tag[len(old):]
        if rest.startswith(("fw:", f"t:{tenant_id}:")) or looks_like_id(rest):
            forms[tag] = new + rest
    return forms
