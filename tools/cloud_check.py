"""`make cloud-check`: is the local cloud API still what DigitalOcean answers?

With a real token (`CP_DO_TOKEN`, from the environment or the file named by `--config` or
CLOUDPROVISIONER_CONFIG) it reads, through the product's own cloud client (`provider.Cloud`),
the account, regions, sizes, distribution images and the droplets carrying this installation's
tag, from DigitalOcean and from a local cloud API it starts for the purpose, and reports where
the two answers differ in shape: a field one sends and the other does not, or a field whose
JSON type differs. It only reads: no request it sends creates, changes or deletes anything.
Each side has the monitor's time budget (CP_MONITOR_CLOUD_BUDGET), as the monitor also reads whole
listings. It also says which of the configured regions, sizes and images the real account does not offer.

Without a token it says so and exits 0: there is nothing to compare.

Exit status: 0 when the local API sends nothing DigitalOcean does not (fields DigitalOcean
sends and the local API leaves out are listed, not failed: the local API is a subset);
1 when DigitalOcean could not be read; 2 when the local API invents a field or a type.
"""

import argparse
import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cloudprovisioner import config as configuration  # noqa: E402
from cloudprovisioner import ownership  # noqa: E402
from cloudprovisioner.errors import CloudFailed  # noqa: E402
from cloudprovisioner.provider import Cloud  # noqa: E402
from devtools.devstack import Process  # noqa: E402

CATALOG_SETTINGS = (("regions", "CP_ALLOWED_REGIONS"), ("sizes", "CP_ALLOWED_SIZES"), ("images", "CP_ALLOWED_IMAGES"))


def listed_tag(config):
    """The installation's tag when it has an install id, else the bare platform tag."""
    try:
        return ownership.install_tag(config)
    except configuration.ConfigError:
        return config.platform_tag


def answers(cloud, tag):
    """What each check reads, by name: a list of records (the account is a list of one)."""
    return {
        "account": [cloud.account()],
        "regions": cloud.list_all("regions", "regions"),
        "sizes": cloud.list_all("sizes", "sizes"),
        "images": cloud.list_all("images", "images", {"type": "distribution"}),
        "droplets": cloud.list_all("droplets/", "droplets", {"tag_name": tag}),
    }


def json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape(records):
    """Every field path in `records` (`a.b`, `a[].c`) with the set of JSON types seen there."""
    found = {}

    def walk(value, path):
        found.setdefault(path, set()).add(json_type(value))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    for record in records:
        for key, value in record.items():
            walk(value, key)
    return found


def unseen(path, other):
    """Whether `other` cannot show `path` because an array holding it was empty there every time
    (a droplet still `new` has no addresses yet: that says nothing about the address's fields)."""
    for index in range(len(path)):
        if path.startswith("[]", index) and path[:index] in other and path[:index + 2] not in other:
            return True
    return False


def differences(real, local):
    """(missing, invented, retyped): fields only DigitalOcean sends, fields only the local API sends,
    and fields both send with types that never agree. null goes with any type: both leave a field
    empty with null (a droplet without a VPC, an image without a description)."""
    missing = sorted(path for path in set(real) - set(local) if not unseen(path, local))
    invented = sorted(path for path in set(local) - set(real) if not unseen(path, real))
    retyped = sorted(f"{path}: DigitalOcean {'/'.join(sorted(real[path]))}, local {'/'.join(sorted(local[path]))}"
                     for path in set(real) & set(local)
                     if (real[path] - {"null"}) and (local[path] - {"null"})
                     and not (real[path] - {"null"}) & (local[path] - {"null"}))
    return missing, invented, retyped


def compare(real_answers, local_answers):
    """Report lines and whether the local API invents anything."""
    lines, invents = [], False
    for name, real in real_answers.items():
        local = local_answers[name]
        if not real or not local:
            lines.append(f"{name}: {len(real)} from DigitalOcean, {len(local)} from the local API: "
                         "no record on one side, only the listing was compared")
            continue
        missing, invented, retyped = differences(shape(real), shape(local))
        if not (missing or invented or retyped):
            lines.append(f"{name}: same shape")
        for label, paths in (("DigitalOcean sends, the local API lacks", missing),
                             ("the local API sends, DigitalOcean does not", invented),
                             ("types differ", retyped)):
            if paths:
                lines.append(f"{name}: {label}: {', '.join(paths)}")
        invents = invents or bool(invented or retyped)
    return lines, invents


def catalog_gaps(config, real_answers):
    """The configured regions, sizes and images the real account does not offer."""
    lines = []
    for name, setting in CATALOG_SETTINGS:
        offered = {record.get("slug") for record in real_answers[name]}
        absent = [slug for slug in config.get_list(setting) if slug not in offered]
        if absent:
            lines.append(f"{setting}: DigitalOcean does not offer {', '.join(absent)}")
    return lines


def one_droplet(config, cloud, tag):
    """A droplet like this installation's in the local cloud (never in the real one), to compare with."""
    first = {setting: config.get_list(setting)[0] for _, setting in CATALOG_SETTINGS}
    cloud.create_droplet(name="cloud-check", region=first["CP_ALLOWED_REGIONS"], size=first["CP_ALLOWED_SIZES"],
                         image=first["CP_ALLOWED_IMAGES"], tags=[tag], ssh_keys=[], user_data="", row_tag=tag)


def local_cloud(workdir, token):
    """A fresh local cloud API on a free loopback port, its droplets active at once (with addresses,
    as an installation's droplets mostly are): (process, its URL)."""
    process = Process([sys.executable, "-m", "docloud", "--port", "0", "--state", workdir / "cloud.sqlite3",
                       f"--token={token}", "--activate-after", "0"], None, workdir / "cloud.log",
                      ready_line_prefix="sandbox listening on ", cwd=ROOT)
    return process, process.start().split()[-1]


def has_token(config):
    try:
        return bool(config.do_token)
    except configuration.ConfigError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make cloud-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="the env file (default: $CLOUDPROVISIONER_CONFIG, else none)")
    args = parser.parse_args(argv)
    try:
        config = configuration.load(path=args.config)
    except configuration.ConfigError as error:
        print(f"cloud-check: configuration error: {error}", file=sys.stderr)
        return 1
    if not has_token(config):
        print("cloud-check: CP_DO_TOKEN is not set, so nothing was checked. Set it to a DigitalOcean API "
              "token (read access is enough) to compare DigitalOcean's answers with the local cloud API's.")
        return 0
    tag = listed_tag(config)
    try:
        real = answers(Cloud(config, config.monitor_cloud_budget), tag)
    except CloudFailed as error:
        print(f"cloud-check: cannot read {config.do_api_url}: {error.message}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cloud-check-") as workdir:
        token = secrets.token_urlsafe(16)
        process, url = local_cloud(Path(workdir), token)
        try:
            local_cloud_client = Cloud(configuration.Config({"CP_DO_API_URL": url, "CP_DO_TOKEN": token}),
                                       config.monitor_cloud_budget)
            if real["droplets"]:
                one_droplet(config, local_cloud_client, tag)
            local = answers(local_cloud_client, tag)
        finally:
            process.stop()
    lines, invents = compare(real, local)
    print(f"cloud-check: {config.do_api_url} against the local cloud API, droplets tagged {tag}")
    for line in lines + catalog_gaps(config, real):
        print(f"  {line}")
    return 2 if invents else 0


if __name__ == "__main__":
    sys.exit(main())
