"""GET/POST /api/firewalls and GET/PATCH/DELETE /api/firewalls/<id>.

A write answers 202 with the firewall and the operation that makes it true in the cloud
(firewalls.py, desired_state.py).
"""

from .. import firewalls
from .responses import Response, accepted, list_page, list_query


def list_firewalls(request):
    args = list_query(request, {})
    return list_page(request, "/firewalls", firewalls.listing(request.ctx, args), args, firewalls.represent)


def get_firewall(request):
    return Response(200, firewalls.represent(firewalls.load_row(request.ctx, request.params["firewall_id"])))


def create_firewall(request):
    return _accepted(request, firewalls.create(request.ctx, request.fields()))


def update_firewall(request):
    body = firewalls.update(request.ctx, request.params["firewall_id"], request.fields())
    return _accepted(request, body)


def delete_firewall(request):
    return _accepted(request, firewalls.delete(request.ctx, request.params["firewall_id"]))


def _accepted(request, body):
    return accepted(request, body, f"/firewalls/{body['id']}")
