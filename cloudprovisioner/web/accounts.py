"""POST /api/auth/register, /api/verify-email (and the page its mail links to), /api/password-reset (and its
confirm), GET /api/me, POST /api/me/password, GET/POST /api/users, PATCH/DELETE /api/users/<id>, and
POST /api/invitations/accept."""

from .. import accounts, sessions
from .responses import NO_STORE, Response

# The page a verification mail links to: a button, never a verification by the GET itself, since mail
# scanners open links in mail they deliver and would verify any address they serve for whoever registered it.
VERIFY_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verify your address</title></head>
<body><h1>Verify your address</h1>
<p>This makes your CloudProvisioner tenant; then log in with your email and password.</p>
<form method="post" action="{action}"><input type="hidden" name="token" value="{token}">
<button type="submit">Verify my address</button></form>
</body></html>
"""
# Nothing on the page runs or loads, it may post only to this service, and no other site frames it or learns
# the token from a Referer.
PAGE_HEADERS = [NO_STORE, ("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
                ("Referrer-Policy", "no-referrer")]


def register(request):
    """POST /api/auth/register: a new tenant and its first user, its admin (201), or, when addresses are
    verified first, the same 202 whether or not the email has an account."""
    accounts.refuse_if_closed(request.config)  # closed is a 403 whatever the body is
    made, answer = accounts.register(request.ctx, request.fields(), request.environ.get("REMOTE_ADDR", ""))
    if made:
        return Response(201, answer, [("Location", request.url("/me"))])
    return Response(202, answer)


def verify_email(request):
    """POST /api/verify-email {token}: the registration the mail was about made now, once."""
    return Response(201, accounts.verify_email(request.ctx, request.fields()), [("Location", request.url("/me"))])


def verify_email_page(request):
    """GET /api/verify-email?token=...: a page whose button posts the token (the token's shape is checked,
    so it is safe in the page as it is)."""
    token = accounts.pending_registration(request.ctx, {name: request.arg(name) for name in request.query})
    response = Response(200, headers=PAGE_HEADERS)
    response.body = VERIFY_PAGE.format(action=request.url("/verify-email"), token=token).encode("utf-8")
    response.headers.append(("Content-Type", "text/html; charset=utf-8"))
    return response


def request_password_reset(request):
    """POST /api/password-reset {email}: 202, whether or not an account has the address."""
    answer = accounts.request_password_reset(request.ctx, request.fields(), request.environ.get("REMOTE_ADDR", ""))
    return Response(202, answer)


def confirm_password_reset(request):
    """POST /api/password-reset/confirm {token, password}."""
    accounts.confirm_password_reset(request.ctx, request.fields())
    return Response(204)


def me(request):
    return Response(200, accounts.me(request.ctx))


def change_password(request):
    """POST /api/me/password {current_password, password}: other sessions end, this one stays."""
    accounts.require_session(request.principal, "change a password")  # before the body is read
    sessions.change_password(request.ctx, request.fields())
    return Response(204)


def list_users(request):
    return Response(200, [accounts.represent(row) for row in accounts.listing(request.ctx)])


def create_user(request):
    """POST /api/users: the user (201) when registration is open; else an invitation by mail (202), the same
    answer whether or not the address has an account."""
    accounts.require_session(request.principal, "create users")  # a 403 whatever the body holds
    made, answer = accounts.create_user(request.ctx, request.fields(), request.environ.get("REMOTE_ADDR", ""))
    if made:
        return Response(201, answer, [("Location", request.url(f"/users/{answer['id']}"))])
    return Response(202, answer)


def accept_invitation(request):
    """POST /api/invitations/accept {token, password}: the invited user made now, once."""
    return Response(201, accounts.accept_invitation(request.ctx, request.fields()), [("Location", request.url("/me"))])


def update_user(request):
    """PATCH /api/users/<id>: role, name, disabled. A tenant keeps at least one active admin."""
    return Response(200, accounts.update_user(request.ctx, request.params["user_id"], request.fields()))


def delete_user(request):
    """DELETE /api/users/<id>: the account goes (its email freed), its history stays."""
    accounts.delete_user(request.ctx, request.params["user_id"])
    return Response(204)
