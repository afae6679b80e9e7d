"""Tags: how the API shows them, and the /v2/tags handlers, (un)tagging droplets included."""

from .errors import is_number, not_found, tag_bad_request, unprocessable
from .plumbing import Reply, static_listing
from .validation import check_tag


def render_tag(summary, base_url):
    name, count, last_droplet_id = summary
    droplets = {"count": count}
    if last_droplet_id is not None:
        droplets["last_tagged_uri"] = f"{base_url}/v2/droplets/{last_droplet_id}"
    empty = {"count": 0}
    return {"name": name, "resources": {
        **droplets, "droplets": droplets, "images": empty, "volumes": empty,
        "volume_snapshots": empty, "databases": empty}}


def list_tags(app, req):
    tags = [render_tag(summary, req.base_url) for summary in app.store.tag_summaries()]
    return static_listing(req, "tags", tags)


def create_tag(app, req):
    # DigitalOcean documents one refusal here: 400 in its tags_bad_request shape.
    name = req.json(refuse=tag_bad_request, malformed=tag_bad_request).get("name")
    check_tag(name, refuse=tag_bad_request)
    app.store.create_tag(name)
    return Reply(201, {"tag": render_tag(app.store.tag_summaries(name)[0], req.base_url)})


def get_tag(app, req):
    summaries = app.store.tag_summaries(req.params["name"])
    if not summaries:
        raise not_found()
    return Reply(200, {"tag": render_tag(summaries[0], req.base_url)})


def delete_tag(app, req):
    if not app.store.delete_tag(req.params["name"]):
        raise not_found()
    return Reply(204)


def _tagged_droplet_ids(app, req):
    """The droplet ids in a tag (un)assign body, all existing, for an existing tag."""
    resources = req.json().get("resources")
    if not isinstance(resources, list) or not resources:
        raise unprocessable("resources must be a non-empty list.")
    ids = []
    for item in resources:
        if not isinstance(item, dict) or item.get("resource_type") != "droplet":
            raise unprocessable("Only droplets can be tagged in the sandbox.")
        ids.append(item.get("resource_id"))
    if not all(is_number(str(i)) for i in ids):
        raise unprocessable("resource_id must be a droplet id.")
    ids = [int(i) for i in ids]
    if not app.store.tag_exists(req.params["name"]):
        raise not_found()
    if set(ids) - app.store.existing_droplet_ids(ids):
        raise not_found()
    return ids


def tag_resources(app, req):
    app.store.tag_droplets(req.params["name"], _tagged_droplet_ids(app, req))
    return Reply(204)


def untag_resources(app, req):
    app.store.untag_droplets(req.params["name"], _tagged_droplet_ids(app, req))
    return Reply(204)
