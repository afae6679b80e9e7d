"""POST /api/auth/login, /api/auth/refresh and /api/auth/logout.

Nobody is authenticated on these: who the domain found (`ctx.actor`) is what the audit log records,
failures included.
"""

from .. import sessions
from .responses import NO_STORE, Response


def login(request):
    """POST /api/auth/login {email, password} -> access and refresh tokens."""
    tokens = sessions.login(request.ctx, request.fields(), request.environ.get("REMOTE_ADDR", ""))
    return Response(200, tokens, [NO_STORE])


def refresh(request):
    """POST /api/auth/refresh {refresh_token} -> a new pair; the old refresh token dies."""
    tokens = sessions.refresh(request.ctx, request.fields())
    return Response(200, tokens, [NO_STORE])


def logout(request):
    """POST /api/auth/logout: ends the session of the bearer access token or of a refresh token."""
    bearer = request.bearer_token()
    fields = None if sessions.by_access_token(bearer) else request.fields()  # by access token: no body
    sessions.logout(request.ctx, bearer, fields)
    return Response(204)
