"""The cloud: DigitalOcean through python-digitalocean, with timeouts, retries and budgets.

Only writes and the monitor import this module; `digitalocean` pulls in
`requests` (~130 ms), which a read request must not pay.

One `Cloud` is one conversation with the cloud: its endpoint and token, a time
budget for everything it is asked (a request's `CP_CLOUD_BUDGET`, the
monitor's `CP_MONITOR_CLOUD_BUDGET`), and its own counters (calls sent, the
last rate-limit headers). Its SDK objects are given the endpoint when made and
ask the Cloud for their timeout, so nothing is written to os.environ.

The SDK neither retries nor shows the answer's headers, so every SDK object
here records the last HTTP answer it got with its Cloud (see `_sdk_classes`);
from that we retry a 429 after `retry-after`/`ratelimit-reset`, and 5xx and
connection failures with bounded exponential backoff and jitter, all within
the budget.

A create is never blindly retried: when its outcome is unknown (a timeout,
a 5xx), we first look for a droplet with the row's tag and adopt it.
"""

import random
import time

from .errors import CloudFailed

PAGE_SIZE = 200  # the API's largest page
BACKOFF_BASE = 0.5  # seconds before the first retry of a failure
BACKOFF_CAP = 8.0  # seconds between retries, at most
GIVE_UP_RETRY_AFTER = 30  # seconds we suggest to clients when the cloud keeps failing


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


_SDK = {}


def _sdk_classes():
    """The SDK's classes, each recording the last HTTP answer with the Cloud it works for.

    Made once per process (the SDK costs its import once); every object is made with
    `cloud=` and `end_point=` keywords, which the SDK's constructor sets as attributes.
    """
    if not _SDK:
        import digitalocean

        class _Recorder:
            def _BaseAPI__perform_request(self, url, type="GET", params=None):  # noqa: A002 (SDK's name)
                self.cloud.last = None
                self.cloud.calls += 1
                answer = super()._BaseAPI__perform_request(url, type, params)
                self.cloud.last = answer
                self.cloud.note_rate_limit(answer.headers)
                return answer

            def get_timeout(self):
                return self.cloud.timeout()

        _SDK.update(module=digitalocean,
                    Droplet=type("Droplet", (_Recorder, digitalocean.Droplet), {}),
                    Manager=type("Manager", (_Recorder, digitalocean.Manager), {}),
                    Action=type("Action", (_Recorder, digitalocean.Action), {}))
    return _SDK


class Cloud:
    """The DigitalOcean account of this installation, as one conversation under one time budget."""

    def __init__(self, config, budget_seconds):
        self.config = config
        self.token = config.do_token
        endpoint = config.do_api_url
        self.endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self.budget = Budget(budget_seconds)
        self.calls = 0  # HTTP requests sent (retries included)
        self.rate_limit = {}  # the last rate-limit headers seen: {"limit", "remaining", "reset"}
        self.last = None  # the last HTTP answer, whose status and headers the SDK hides

    def timeout(self):
        """Each HTTP request's: never wait past the budget."""
        return max(0.5, min(self.config.do_timeout, self.budget.left()))

    def note_rate_limit(self, headers):
        for name in ("limit", "remaining", "reset"):
            value = headers.get(f"ratelimit-{name}")
            if value is not None and value.isdigit():
                self.rate_limit[name] = int(value)

    def _new(self, kind, **fields):
        """An SDK object of `kind` (Droplet, Manager, Action) working for this Cloud."""
        return _sdk_classes()[kind](token=self.token, end_point=self.endpoint, cloud=self, **fields)

    def _once(self, action):
        """One attempt of `action()`; every failure becomes a CloudFailed."""
        module = _sdk_classes()["module"]
        import requests
        from digitalocean.baseapi import JSONReadError
        self.last = None
        try:
            return action()
        except module.NotFoundError:
            raise
        except (module.DataReadError, module.TokenError, JSONReadError, IndexError, KeyError) as exc:
            raise _error_from_answer(self.last, exc) from None
        except requests.Timeout:
            raise CloudFailed(f"the cloud did not answer within {self.config.do_timeout} s") from None
        except requests.RequestException as exc:
            raise CloudFailed(f"cannot reach the cloud API: {type(exc).__name__}") from None

    def _call(self, action, before_retry=None):
        """`action()` with retries inside the budget. `before_retry(error)` may settle the
        call instead (a create checks whether its droplet exists) by answering non-None."""
        attempt = 0
        while True:
            try:
                return self._once(action)
            except CloudFailed as error:
                if not error.retryable:
                    raise
                wait = error.retry_after if error.rate_limited else _backoff(attempt)
                if wait > self.budget.left():
                    raise _given_up(error, wait) from None
                time.sleep(wait)
                attempt += 1
                if before_retry is not None and not error.rate_limited:
                    settled = before_retry(error)
                    if settled is not None:
                        return settled

    def _not_found(self):
        return _sdk_classes()["module"].NotFoundError

    # --- droplets ---

    def create_droplet(self, *, name, region, size, image, tags, ssh_keys, user_data, row_tag, vpc_uuid=None):
        """Create one droplet tagged `row_tag` and return its id; never two for one row."""
        def create():
            droplet = self._new("Droplet", name=name, region=region, size_slug=size, image=image, tags=tags,
                                ssh_keys=ssh_keys, user_data=user_data or None, vpc_uuid=vpc_uuid)
            droplet.create()
            return droplet.id

        def already_made(error):
            # The last try may have created it before failing: look before creating again.
            found = self.list_droplets(row_tag)
            return found[0].id if found else None
        try:
            return self._call(create, before_retry=already_made)
        except self._not_found():
            raise CloudFailed("the cloud API answered 404 to a create", 404) from None

    def destroy_droplet(self, droplet_id):
        """Destroy a droplet. Answer False when it was already gone."""
        def destroy():
            self._new("Droplet", id=droplet_id).destroy()
            return True
        try:
            return self._call(destroy)
        except self._not_found():
            return False

    def droplet_action(self, droplet_id, kind):
        """Start a power action (reboot, power_off, power_on); answer the cloud's action id.

        Only a 429 is retried: after any other failure the action may have started, and a
        reboot sent twice reboots twice.
        """
        def act():
            return self._new("Droplet", id=droplet_id)._perform_action({"type": kind})["action"]["id"]

        def unknown_outcome(error):
            raise CloudFailed(f"{error.message}; the action may or may not have started", error.status,
                              GIVE_UP_RETRY_AFTER)
        try:
            return self._call(act, before_retry=unknown_outcome)
        except self._not_found():
            raise CloudFailed("the droplet is gone from the cloud", 404) from None

    def action_status(self, action_id):
        """The cloud's status of an action: in-progress, completed or errored."""
        def load():
            action = self._new("Action", id=action_id)
            action.load_directly()
            return action.status
        return self._call(load)

    def list_droplets(self, tag):
        """Every droplet carrying `tag`, 200 a page: one API call per page (plus retries)."""
        return [_droplet(item) for item in self.list_all("droplets/", "droplets", {"tag_name": tag})]

    def get_droplet(self, droplet_id):
        """The cloud's whole record of one droplet (a dict), or None when it is gone."""
        return self._found(f"droplets/{droplet_id}", "droplet")

    def tag_droplets(self, tag, droplet_ids):
        """Add `tag` to droplets (making the tag first; both are harmless to repeat)."""
        self._api("POST", "tags", {"name": tag})
        for start in range(0, len(droplet_ids), 50):
            resources = [{"resource_id": str(droplet_id), "resource_type": "droplet"}
                         for droplet_id in droplet_ids[start:start + 50]]
            self._api("POST", f"tags/{tag}/resources", {"resources": resources})

    def account(self):
        """The account the token belongs to (its limits, email, status)."""
        return self._api("GET", "account")["account"]

    # --- any listing, and the generic call ---

    def list_all(self, path, key, params=None):
        """Every item of a listing, 200 a page.

        We page ourselves: the SDK's own pagination never checks the status of
        pages after the first, so a 429 on page 3 would silently shorten the list,
        and a short list would make the monitor think things had vanished.
        """
        found, page = [], 1
        while True:
            data = self._api("GET", path, {**(params or {}), "per_page": PAGE_SIZE, "page": page})
            found += data[key]
            if not data.get("links", {}).get("pages", {}).get("next"):
                return found
            page += 1

    def _api(self, method, path, body=None, before_retry=None):
        """One API call through the SDK's generic request (so timeouts, recording and errors are as for
        droplets); answers the decoded JSON, or True for a 204. A 404 is a CloudFailed with status 404."""
        def send():
            return self._new("Manager").get_data(path, type=method, params=body)
        try:
            return self._call(send, before_retry)
        except self._not_found():
            raise CloudFailed(f"the cloud has no {path.rstrip('/')}", 404) from None

    def _found(self, path, key):
        """GET `path` and answer its `key`, or None when the cloud has no such thing."""
        try:
            return self._api("GET", path)[key]
        except CloudFailed as error:
            if error.status == 404:
                return None
            raise

    def _gone_ok(self, path):
        """DELETE `path`; answer False when it was already gone."""
        try:
            return bool(self._api("DELETE", path))
        except CloudFailed as error:
            if error.status == 404:
                return False
            raise

    def _create(self, path, listing, key, body):
        """POST a named object and answer its cloud id; a retry first looks for it by name
        (how a create whose answer was lost is adopted instead of made twice)."""
        def already_made(error):
            found = next((item["id"] for item in self.list_all(path, listing) if item.get("name") == body["name"]),
                         None)
            return {key: {"id": found}} if found else None
        return self._api("POST", path, body, already_made)[key]["id"]

    # --- VPCs and firewalls: their cloud names hold their row ids ---

    def list_vpcs(self):
        return self.list_all("vpcs", "vpcs")

    def create_vpc(self, *, name, region, ip_range, description):
        body = {"name": name, "region": region, "ip_range": ip_range, "description": description}
        return self._create("vpcs", "vpcs", "vpc", body)

    def network_object(self, kind, cloud_id):
        """A VPC's or firewall's record (`kind` is vpc or firewall), or None when the cloud has none."""
        return self._found(f"{kind}s/{cloud_id}", kind)

    def rename_vpc(self, cloud_id, name):
        return self._api("PATCH", f"vpcs/{cloud_id}", {"name": name})

    def delete_vpc(self, cloud_id):
        return self._gone_ok(f"vpcs/{cloud_id}")

    def list_firewalls(self):
        return self.list_all("firewalls/", "firewalls")

    def create_firewall(self, spec):
        self._make_tags(spec)
        return self._create("firewalls/", "firewalls", "firewall", spec)

    def update_firewall(self, cloud_id, spec):
        self._make_tags(spec)
        return self._api("PUT", f"firewalls/{cloud_id}", spec)["firewall"]

    def _make_tags(self, spec):
        """A firewall may only name tags that exist (the model's existing_tags_array), and a tag
        exists from its first droplet on: make each first. Making an existing tag is harmless."""
        tags = set(spec.get("tags", []))
        for rule in spec["inbound_rules"] + spec["outbound_rules"]:
            tags.update((rule.get("sources") or rule.get("destinations") or {}).get("tags", []))
        for tag in sorted(tags):
            self._api("POST", "tags", {"name": tag})

    def delete_firewall(self, cloud_id):
        return self._gone_ok(f"firewalls/{cloud_id}")

    # --- the account's SSH keys ---

    def register_key(self, *, name, public_key, fingerprint):
        """The account key id for a public key, adding it to the account if it is not there yet."""
        found = self._key_by_fingerprint(fingerprint)
        if found is not None:
            return found
        try:
            answer = self._api("POST", "account/keys", {"name": name, "public_key": public_key},
                               lambda error: self._key_by_fingerprint(fingerprint))
        except CloudFailed as error:
            # Another request added the same key between our look and our add ("already in use").
            found = self._key_by_fingerprint(fingerprint) if error.status == 422 else None
            if found is None:
                raise
            return found
        return answer if isinstance(answer, int) else answer["ssh_key"]["id"]

    def _key_by_fingerprint(self, fingerprint):
        key = self.account_key(fingerprint)
        return key and key["id"]

    def account_key(self, id_or_fingerprint):
        """The account's key with this id or fingerprint (a dict with its name), or None when there is none."""
        return self._found(f"account/keys/{id_or_fingerprint}", "ssh_key")

    def delete_key(self, cloud_key_id):
        return self._gone_ok(f"account/keys/{cloud_key_id}")


def _error_from_answer(answer, exc):
    if answer is None:
        return CloudFailed(f"the cloud refused: {exc}")
    status = answer.status_code
    try:
        body = answer.json()
        message = body.get("message") if isinstance(body, dict) else None
        message = message or "no error message (an unexpected body)"
    except ValueError:
        message = "the cloud answered with something that is not JSON"
    if status == 429:
        return CloudFailed(f"the cloud refused: {message}", 429, _rate_limit_wait(answer.headers))
    return CloudFailed(f"the cloud refused ({status}): {message}", status)


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


def _given_up(error, wait):
    """Out of budget: tell the client when to come back."""
    retry_after = error.retry_after if error.rate_limited else GIVE_UP_RETRY_AFTER
    return CloudFailed(error.message, error.status, max(1, int(retry_after or wait)))


def _droplet(item):
    addresses = {net["type"]: net["ip_address"] for net in item["networks"]["v4"]}
    return Droplet(item["id"], item["status"], list(item.get("tags") or []),
                   addresses.get("public", ""), addresses.get("private", ""),
                   item.get("created_at", ""), item.get("name", ""))
