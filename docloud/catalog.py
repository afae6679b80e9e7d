"""The fixed catalog: regions, sizes, distribution images and the account,
and the read-only handlers that serve them (/v2/account, /v2/regions,
/v2/sizes, /v2/images)."""

from .errors import is_number, not_found
from .plumbing import Reply, static_listing

REGION_NAMES = {
    "nyc1": "New York 1", "nyc3": "New York 3", "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3", "fra1": "Frankfurt 1", "lon1": "London 1",
    "sgp1": "Singapore 1", "tor1": "Toronto 1",
}
REGION_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage",
                   "image_transfer"]

# slug: (memory MiB, vcpus, disk GiB, transfer TiB, USD per month)
SIZE_SPECS = {
    "s-1vcpu-512mb-10gb": (512, 1, 10, 0.5, 4.0),
    "s-1vcpu-1gb": (1024, 1, 25, 1.0, 6.0),
    "s-1vcpu-2gb": (2048, 1, 50, 2.0, 12.0),
    "s-2vcpu-2gb": (2048, 2, 60, 3.0, 18.0),
    "s-2vcpu-4gb": (4096, 2, 80, 4.0, 24.0),
    "s-4vcpu-8gb": (8192, 4, 160, 5.0, 48.0),
}
HOURS_PER_MONTH = 672  # DigitalOcean prices a month as 28 days

# id: (slug, name, distribution, min_disk_size GiB, size_gigabytes, created_at)
IMAGE_SPECS = {
    163000001: ("ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", 7, 2.36,
                "2024-07-01T14:20:05Z"),
    163000002: ("ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", 7, 2.28,
                "2024-07-01T14:18:41Z"),
    163000003: ("debian-12-x64", "12 x64", "Debian", 7, 1.03, "2024-07-02T09:11:52Z"),
    163000004: ("rockylinux-9-x64", "9 x64", "Rocky Linux", 10, 1.61,
                "2024-07-03T11:47:10Z"),
}

DEFAULT_REGION = "nyc3"  # the API lets a create omit the region
BULK_DEFAULTS = {"region": DEFAULT_REGION, "size": "s-1vcpu-1gb",
                 "image": "ubuntu-24-04-x64", "name_prefix": "bulk"}


def _size(slug, memory, vcpus, disk, transfer, monthly):
    return {
        "slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk,
        "transfer": transfer, "price_monthly": monthly,
        "price_hourly": round(monthly / HOURS_PER_MONTH, 5),
        "regions": sorted(REGION_NAMES), "available": True, "description": "Basic",
        "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
    }


def _image(image_id, slug, name, distribution, min_disk, gigabytes, created_at):
    return {
        "id": image_id, "name": name, "type": "base", "distribution": distribution,
        "slug": slug, "public": True, "regions": sorted(REGION_NAMES),
        "created_at": created_at, "min_disk_size": min_disk,
        "size_gigabytes": gigabytes, "description": f"{distribution} {name}",
        "tags": [], "status": "available", "error_message": "",
    }


SIZES = {slug: _size(slug, *spec) for slug, spec in SIZE_SPECS.items()}
REGIONS = {
    slug: {"name": name, "slug": slug, "features": REGION_FEATURES,
           "available": True, "sizes": list(SIZES)}
    for slug, name in REGION_NAMES.items()
}
IMAGES = {image_id: _image(image_id, *spec) for image_id, spec in IMAGE_SPECS.items()}
IMAGES_BY_SLUG = {image["slug"]: image for image in IMAGES.values()}

ACCOUNT = {
    # Sized for the 10,000-droplet load tests; the sandbox does not enforce it.
    "droplet_limit": 10000, "floating_ip_limit": 3,
    "email": "sandbox@example.com", "name": "Sandbox",
    "uuid": "5a9d2f3e8c1b4d7f9e0a6b2c4d8e1f3a5b7c9d0e",
    "email_verified": True, "status": "active", "status_message": "",
    "team": {"uuid": "0c4f7a2e9b1d3c5e7f8a0b2d4c6e8f1a3b5d7c9e", "name": "Sandbox Team"},
}


def find_image(ref):
    if isinstance(ref, bool):
        return None
    if isinstance(ref, str) and is_number(ref):
        ref = int(ref)
    if isinstance(ref, int):
        return IMAGES.get(ref)
    return IMAGES_BY_SLUG.get(ref) if isinstance(ref, str) else None


def get_account(app, req):
    return Reply(200, {"account": ACCOUNT})


def list_regions(app, req):
    return static_listing(req, "regions", list(REGIONS.values()))


def list_sizes(app, req):
    return static_listing(req, "sizes", list(SIZES.values()))


def list_images(app, req):
    # Every catalog image is a public distribution image: other types and
    # private (user) images are empty lists.
    kind = req.query.get("type")
    private = req.query.get("private") == "true"
    images = [] if private or kind not in (None, "distribution") else list(IMAGES.values())
    return static_listing(req, "images", images)


def get_image(app, req):
    image = find_image(req.params["image"])
    if image is None:
        raise not_found()
    return Reply(200, {"image": image})
