"""The cloud: DigitalOcean through python-digitalocean, with timeouts, retries and budgets.

Only writes and the monitor import this module; `digitalocean` pulls in
`requests` (~130 ms), which a read request must not pay.

The SDK reads its base URL and timeout from the environment, and child
objects never see a Manager's `end_point`, so both are set in os.environ
before each call. The SDK neither retries nor shows the answer's
headers, so every SDK object here records the last HTTP answer it got (see
`_Recorder`); from that we retry a 429 after `retry-after`/`ratelimit-reset`,
and 5xx and connection failures with bounded exponential backoff and jitter,
all within a time budget: a CGI request's (`CP_CLOUD_BUDGET`) or the
monitor's (`CP_MONITOR_CLOUD_BUDGET`).

A create is never blindly retried: when its outcome is unknown (a timeout,
a 5xx), we first look for a droplet with the row's tag and adopt it.
"""

import os
import random
import time

PAGE_SIZE = 200  # the API's largest page
BACKOFF_BASE = 0.5  # seconds before the first retry of a failure
BACKOFF_CAP = 8.0  # seconds between retries, at most
GIVE_UP_RETRY_AFTER = 30  # seconds we suggest to clients when the cloud keeps failing

# The last rate-limit headers seen in this process: {"limit", "remaining", "reset"}.
rate_limit = {}
# HTTP requests this process has sent to the cloud (retries included).
calls = {"count": 0}


class CloudError(Exception):
    """The cloud refused, failed or did not answer.

    `status` is the cloud's HTTP status (None when nothing came back);
    `retry_after` is how long to wait before trying again, when we know.
    """

    def __init__(self, message, status=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self):
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def rate_limited(self):
        return self.status == 429


class Droplet:
    """What we need to know about one droplet, independent of the SDK's class."""

    def __init__(self, droplet_id, status, tags, public_ip="", private_ip="", created_at="", name=""):
        self.id = droplet_id
        self.name = name
        self.status = status
        self.tags = tags
        self.public_ip = public_ip
        self.private_ip = private_ip
        self.created_at = created_at


class Budget:
    """A deadline for a whole cloud conversation, retries included."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self):
        return self.deadline - time.monotonic()


def request_budget(config):
    return Budget(config.cloud_budget)


def monitor_budget(config):
    return Budget(config.monitor_cloud_budget)


_SDK = {}


def _sdk(config, budget):
    endpoint = config.do_api_url
    os.environ["DIGITALOCEAN_END_POINT"] = endpoint if endpoint.endswith("/") else endpoint + "/"
    # Read by the SDK on every request: never wait past the budget.
    timeout = max(0.5, min(config.do_timeout, budget.left()))
    os.environ["PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC"] = f"{timeout:.2f}"
    if not _SDK:
        import digitalocean

        class _Recorder:
            """Keeps the last HTTP answer, whose status and headers the SDK hides."""

            def _BaseAPI__perform_request(self, url, type="GET", params=None):  # noqa: A002 (SDK's name)
                _SDK["last"] = None
                calls["count"] += 1
                answer = super()._BaseAPI__perform_request(url, type, params)
                _SDK["last"] = answer
                _note_rate_limit(answer.headers)
                return answer

        _SDK.update(module=digitalocean,
                    Droplet=type("Droplet", (_Recorder, digitalocean.Droplet), {}),
                    Manager=type("Manager", (_Recorder, digitalocean.Manager), {}),
                    Action=type("Action", (_Recorder, digitalocean.Action), {}))
    _SDK["last"] = None
    return _SDK


def _note_rate_limit(headers):
    for name in ("limit", "remaining", "reset"):
        value = headers.get(f"ratelimit-{name}")
        if value is not None and value.isdigit():
            rate_limit[name] = int(value)


def _once(config, budget, action):
    """One attempt of `action(sdk)`; every failure becomes a CloudError."""
    sdk = _sdk(config, budget)
    module = sdk["module"]
    import requests
    from digitalocean.baseapi import JSONReadError
    try:
        return action(sdk)
    except module.NotFoundError:
        raise
    except (module.DataReadError, module.TokenError, JSONReadError, IndexError, KeyError) as exc:
        raise _error_from_answer(sdk.get("last"), exc) from None
    except requests.Timeout:
        raise CloudError(f"the cloud did not answer within {config.do_timeout} s") from None
    except requests.RequestException as exc:
        raise CloudError(f"cannot reach the cloud API: {type(exc).__name__}") from None


def _error_from_answer(answer, exc):
    if answer is None:
        return CloudError(f"the cloud refused: {exc}")
    status = answer.status_code
    try:
        body = answer.json()
        message = body.get("message") if isinstance(body, dict) else None
        message = message or "no error message (an unexpected body)"
    except ValueError:
        message = "the cloud answered with something that is not JSON"
    if status == 429:
        return CloudError(f"the cloud refused: {message}", 429, _rate_limit_wait(answer.headers))
    return CloudError(f"the cloud refused ({status}): {message}", status)


def _rate_limit_wait(headers):
    """Seconds until the cloud takes requests again: `retry-after`, else `ratelimit-reset`."""
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return max(1, int(retry_after))
    reset = headers.get("ratelimit-reset", "")
    if reset.isdigit():
        return max(1, int(reset) - int(time.time()))
    return 60


def _backoff(attempt):
    """Exponential, capped, with jitter so that many clients do not retry in step."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)
    return random.uniform(ceiling / 2, ceiling)


def _call(config, budget, action, before_retry=None):
    """`action(sdk)` with retries inside the budget. `before_retry(error)` may settle the
    call instead (a create checks whether its droplet exists) by answering non-None."""
    attempt = 0
    while True:
        try:
            return _once(config, budget, action)
        except CloudError as error:
            if not error.retryable:
                raise
            wait = error.retry_after if error.rate_limited else _backoff(attempt)
            if wait > budget.left():
                raise _given_up(error, wait) from None
            time.sleep(wait)
            attempt += 1
            if before_retry is not None and not error.rate_limited:
                settled = before_retry(error)
                if settled is not None:
                    return settled


def _given_up(error, wait):
    """Out of budget: tell the client when to come back."""
    retry_after = error.retry_after if error.rate_limited else GIVE_UP_RETRY_AFTER
    return CloudError(error.message, error.status, max(1, int(retry_after or wait)))


def create_droplet(config, budget, *, name, region, size, image, tags, ssh_keys, user_data, row_tag, vpc_uuid=None):
    """Create one droplet tagged `row_tag` and return its id; never two for one row."""
    def create(sdk):
        droplet = sdk["Droplet"](token=config.do_token, name=name, region=region, size_slug=size,
                                 image=image, tags=tags, ssh_keys=ssh_keys, user_data=user_data or None,
                                 vpc_uuid=vpc_uuid)
        droplet.create()
        return droplet.id

    def already_made(error):
        # The last try may have created it before failing: look before creating again.
        found = list_droplets(config, budget, row_tag)
        return found[0].id if found else None
    try:
        return _call(config, budget, create, before_retry=already_made)
    except _sdk(config, budget)["module"].NotFoundError:
        raise CloudError("the cloud API answered 404 to a create", 404) from None


def destroy_droplet(config, budget, droplet_id):
    """Destroy a droplet. Answer False when it was already gone."""
    def destroy(sdk):
        sdk["Droplet"](token=config.do_token, id=droplet_id).destroy()
        return True
    try:
        return _call(config, budget, destroy)
    except _sdk(config, budget)["module"].NotFoundError:
        return False


def droplet_action(config, budget, droplet_id, kind):
    """Start a power action (reboot, power_off, power_on); answer the cloud's action id.

    Only a 429 is retried: after any other failure the action may have started, and a
    reboot sent twice reboots twice.
    """
    def act(sdk):
        droplet = sdk["Droplet"](token=config.do_token, id=droplet_id)
        return droplet._perform_action({"type": kind})["action"]["id"]

    def unknown_outcome(error):
        raise CloudError(f"{error.message}; the action may or may not have started", error.status,
                         GIVE_UP_RETRY_AFTER)
    try:
        return _call(config, budget, act, before_retry=unknown_outcome)
    except _sdk(config, budget)["module"].NotFoundError:
        raise CloudError("the droplet is gone from the cloud", 404) from None


def action_status(config, budget, action_id):
    """The cloud's status of an action: in-progress, completed or errored."""
    def load(sdk):
        return sdk["Action"].get_object(config.do_token, action_id).status
    return _call(config, budget, load)


def list_droplets(config, budget, tag):
    """Every droplet carrying `tag`, 200 a page: one API call per page (plus retries)."""
    return [_droplet(item) for item in list_all(config, budget, "droplets/", "droplets", {"tag_name": tag})]


def get_droplet(config, budget, droplet_id):
    """The cloud's whole record of one droplet (a dict), or None when it is gone."""
    return _found(config, budget, f"droplets/{droplet_id}", "droplet")


def tag_droplets(config, budget, tag, droplet_ids):
    """Add `tag` to droplets (making the tag first; both are harmless to repeat)."""
    _api(config, budget, "POST", "tags", {"name": tag})
    for start in range(0, len(droplet_ids), 50):
        resources = [{"resource_id": str(droplet_id), "resource_type": "droplet"}
                     for droplet_id in droplet_ids[start:start + 50]]
        _api(config, budget, "POST", f"tags/{tag}/resources", {"resources": resources})


def list_all(config, budget, path, key, params=None):
    """Every item of a listing, 200 a page.

    We page ourselves: the SDK's own pagination never checks the status of
    pages after the first, so a 429 on page 3 would silently shorten the list,
    and a short list would make the monitor think things had vanished.
    """
    found, page = [], 1
    while True:
        data = _api(config, budget, "GET", path, {**(params or {}), "per_page": PAGE_SIZE, "page": page})
        found += data[key]
        if not data.get("links", {}).get("pages", {}).get("next"):
            return found
        page += 1


def _api(config, budget, method, path, body=None, before_retry=None):
    """One API call through the SDK's generic request (so timeouts, recording and errors are as for
    droplets); answers the decoded JSON, or True for a 204. A 404 is a CloudError with status 404."""
    def send(sdk):
        return sdk["Manager"](token=config.do_token).get_data(path, type=method, params=body)
    try:
        return _call(config, budget, send, before_retry)
    except _sdk(config, budget)["module"].NotFoundError:
        raise CloudError(f"the cloud has no {path.rstrip('/')}", 404) from None


def _found(config, budget, path, key):
    """GET `path` and answer its `key`, or None when the cloud has no such thing."""
    try:
        return _api(config, budget, "GET", path)[key]
    except CloudError as error:
        if error.status == 404:
            return None
        raise


def _gone_ok(config, budget, path):
    """DELETE `path`; answer False when it was already gone."""
    try:
        return bool(_api(config, budget, "DELETE", path))
    except CloudError as error:
        if error.status == 404:
            return False
        raise


def _find_named(config, budget, path, key, name):
    """The cloud's id of the object called `name` (how a create whose outcome is unknown is adopted)."""
    return next((item["id"] for item in list_all(config, budget, path, key) if item.get("name") == name), None)


# VPCs, firewalls and account SSH keys. A VPC's or firewall's cloud name holds its row id,
# so a create whose answer was lost is found and adopted instead of made twice.

def list_vpcs(config, budget):
    return list_all(config, budget, "vpcs", "vpcs")


def create_vpc(config, budget, *, name, region, ip_range, description):
    body = {"name": name, "region": region, "ip_range": ip_range, "description": description}
    return _create(config, budget, "vpcs", "vpcs", "vpc", body)


def network_object(config, budget, kind, cloud_id):
    """A VPC's or firewall's record (`kind` is vpc or firewall), or None when the cloud has none."""
    return _found(config, budget, f"{kind}s/{cloud_id}", kind)


def rename_vpc(config, budget, cloud_id, name):
    return _api(config, budget, "PATCH", f"vpcs/{cloud_id}", {"name": name})


def delete_vpc(config, budget, cloud_id):
    return _gone_ok(config, budget, f"vpcs/{cloud_id}")


def list_firewalls(config, budget):
    return list_all(config, budget, "firewalls/", "firewalls")


def create_firewall(config, budget, spec):
    _make_tags(config, budget, spec)
    return _create(config, budget, "firewalls/", "firewalls", "firewall", spec)


def update_firewall(config, budget, cloud_id, spec):
    _make_tags(config, budget, spec)
    return _api(config, budget, "PUT", f"firewalls/{cloud_id}", spec)["firewall"]


def _make_tags(config, budget, spec):
    """A firewall may only name tags that exist (the model's existing_tags_array), and a tag
    exists from its first droplet on: make each first. Making an existing tag is harmless."""
    tags = set(spec.get("tags", []))
    for rule in spec["inbound_rules"] + spec["outbound_rules"]:
        tags.update((rule.get("sources") or rule.get("destinations") or {}).get("tags", []))
    for tag in sorted(tags):
        _api(config, budget, "POST", "tags", {"name": tag})


def delete_firewall(config, budget, cloud_id):
    return _gone_ok(config, budget, f"firewalls/{cloud_id}")


def _create(config, budget, path, listing, key, body):
    """POST a named object and answer its cloud id; a retry first looks for it by name."""
    def already_made(error):
        found = _find_named(config, budget, path, listing, body["name"])
        return {key: {"id": found}} if found else None
    return _api(config, budget, "POST", path, body, already_made)[key]["id"]


def register_key(config, budget, *, name, public_key, fingerprint):
    """The account key id for a public key, adding it to the account if it is not there yet."""
    found = _key_by_fingerprint(config, budget, fingerprint)
    if found is not None:
        return found
    try:
        answer = _api(config, budget, "POST", "account/keys", {"name": name, "public_key": public_key},
                      lambda error: _key_by_fingerprint(config, budget, fingerprint))
    except CloudError as error:
        # Another request added the same key between our look and our add ("already in use").
        found = _key_by_fingerprint(config, budget, fingerprint) if error.status == 422 else None
        if found is None:
            raise
        return found
    return answer if isinstance(answer, int) else answer["ssh_key"]["id"]


def _key_by_fingerprint(config, budget, fingerprint):
    key = account_key(config, budget, fingerprint)
    return key and key["id"]


def account_key(config, budget, id_or_fingerprint):
    """The account's key with this id or fingerprint (a dict with its name), or None when there is none."""
    return _found(config, budget, f"account/keys/{id_or_fingerprint}", "ssh_key")


def delete_key(config, budget, cloud_key_id):
    return _gone_ok(config, budget, f"account/keys/{cloud_key_id}")


def _droplet(item):
    addresses = {net["type"]: net["ip_address"] for net in item["networks"]["v4"]}
    return Droplet(item["id"], item["status"], list(item.get("tags") or []),
                   addresses.get("public", ""), addresses.get("private", ""),
                   item.get("created_at", ""), item.get("name", ""))
