"""GET/POST /api/vpcs and GET/DELETE /api/vpcs/<id>.

A write answers 202 with the VPC and the operation that makes it true in the cloud
(vpcs.py, desired_state.py).
"""

from .. import vpcs
from ..validation import Field, one_of
from .responses import Response, accepted, list_page, list_query


def list_vpcs(request):
    args = list_query(request, {"region": Field(one_of(request.config.get_list("CP_ALLOWED_REGIONS"), "region"))})
    return list_page(request, "/vpcs", vpcs.listing(request.ctx, args), args, vpcs.represent)


def get_vpc(request):
    return Response(200, vpcs.represent(vpcs.load_row(request.ctx, request.params["vpc_id"])))


def create_vpc(request):
    return _accepted(request, vpcs.create(request.ctx, request.fields()))


def delete_vpc(request):
    return _accepted(request, vpcs.delete(request.ctx, request.params["vpc_id"]))


def _accepted(request, body):
    return accepted(request, body, f"/vpcs/{body['id']}")
