"""The cloud: DigitalOcean through python-digitalocean.

Only the write path and the monitor import this module; `digitalocean` pulls
in `requests` (~130 ms), which a read request must not pay.

The SDK reads its base URL and timeout from the environment, and child
objects never see a Manager's `end_point`, so both are set in os.environ
before the SDK is first imported (DESIGN.md).
"""

import os

PAGE_SIZE = 200  # the API's largest page


class CloudError(Exception):
    """The cloud refused, failed or did not answer; `message` says which."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Droplet:
    """What we need to know about one droplet, independent of the SDK's class."""

    def __init__(self, droplet_id, status, tags, public_ip="", private_ip="", created_at=""):
        self.id = droplet_id
        self.status = status
        self.tags = tags
        self.public_ip = public_ip
        self.private_ip = private_ip
        self.created_at = created_at


def _sdk(config):
    endpoint = config.do_api_url
    os.environ["DIGITALOCEAN_END_POINT"] = endpoint if endpoint.endswith("/") else endpoint + "/"
    os.environ["PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC"] = str(config.do_timeout)
    import digitalocean
    return digitalocean


def _call(config, action):
    """Run `action(sdk)`, turning every SDK and transport failure into CloudError."""
    sdk = _sdk(config)
    import requests
    from digitalocean.baseapi import JSONReadError
    try:
        return action(sdk)
    except sdk.NotFoundError:
        raise
    except sdk.TokenError:
        raise CloudError("the cloud API token is missing or was refused") from None
    except sdk.DataReadError as exc:
        # The SDK raises this for any non-2xx JSON answer with the cloud's message.
        raise CloudError(f"the cloud refused: {exc}") from None
    except JSONReadError:
        raise CloudError("the cloud answered with something that is not JSON") from None
    except requests.Timeout:
        raise CloudError(f"the cloud did not answer within {config.do_timeout} s") from None
    except requests.RequestException as exc:
        raise CloudError(f"cannot reach the cloud API: {type(exc).__name__}") from None
    except (IndexError, KeyError):
        # An error body without both `id` and `message` makes the SDK index past its list.
        raise CloudError("the cloud answered with an unexpected body") from None


def create_droplet(config, *, name, region, size, image, tags, ssh_keys, user_data):
    """Create one droplet and return its id as soon as the cloud assigns it."""
    def create(sdk):
        droplet = sdk.Droplet(token=config.do_token, name=name, region=region,
                              size_slug=size, image=image, tags=tags,
                              ssh_keys=ssh_keys, user_data=user_data or None)
        droplet.create()
        return droplet.id
    try:
        return _call(config, create)
    except _not_found(config):
        raise CloudError("the cloud API answered 404 to a create") from None


def destroy_droplet(config, droplet_id):
    """Destroy a droplet. Answer False when it was already gone."""
    def destroy(sdk):
        sdk.Droplet(token=config.do_token, id=droplet_id).destroy()
        return True
    try:
        return _call(config, destroy)
    except _not_found(config):
        return False


def list_droplets(config, tag):
    """Every droplet carrying `tag`, 200 a page: one API call per page.

    We page ourselves: the SDK's own pagination never checks the status of
    pages after the first, so a 429 on page 3 would silently shorten the list,
    and a short list would make the monitor think droplets had vanished.
    """
    def list_all(sdk):
        manager = sdk.Manager(token=config.do_token)
        found, page = [], 1
        while True:
            data = manager.get_data("droplets/", params={"tag_name": tag, "per_page": PAGE_SIZE,
                                                         "page": page})
            found += [_droplet(item) for item in data["droplets"]]
            if not data.get("links", {}).get("pages", {}).get("next"):
                return found
            page += 1
    return _call(config, list_all)


def _droplet(item):
    addresses = {net["type"]: net["ip_address"] for net in item["networks"]["v4"]}
    return Droplet(item["id"], item["status"], list(item.get("tags") or []),
                   addresses.get("public", ""), addresses.get("private", ""),
                   item.get("created_at", ""))


def _not_found(config):
    return _sdk(config).NotFoundError
