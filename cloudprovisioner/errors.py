"""What the domain raises when it refuses or cannot do something.

These know nothing of HTTP: the web layer's one table (web/responses.py) gives each kind its
status and headers; the monitor and the admin commands print the detail. `slug` names the
particular refusal (a problem's type), `detail` says it to a person, `errors` maps fields to
what is wrong with each, `facts` holds figures a program may act on (a quota's limit and use), and
`retry_after` is the seconds after which trying again may work.
"""


class DomainError(Exception):
    slug = "error"

    def __init__(self, detail, slug=None, *, errors=None, retry_after=None, facts=None):
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        self.errors = errors
        self.retry_after = retry_after
        self.facts = facts


class NotFound(DomainError):
    """No such thing for this caller: someone else's object and a made-up id answer alike."""
    slug = "not-found"


def no_such(what):
    return NotFound(f"no such {what}")


class Invalid(DomainError):
    """The input is wrong; `errors` names each wrong field."""
    slug = "invalid-fields"


def invalid(errors):
    return Invalid(f"invalid fields: {', '.join(sorted(errors))}", errors=errors)


class Conflict(DomainError):
    """The request is well-formed but clashes with what exists (a taken name, a state that forbids it)."""


class Forbidden(DomainError):
    """The caller is known but may not do this."""
    slug = "forbidden"


class Unauthenticated(DomainError):
    """The caller's credentials are missing, wrong or ended. `challenge_error` is the OAuth error code
    for the bearer challenge (RFC 6750), None when no credentials came at all."""
    slug = "unauthorized"

    def __init__(self, detail, challenge_error="invalid_token"):
        super().__init__(detail)
        self.challenge_error = challenge_error


class Throttled(DomainError):
    """Too many attempts of something that costs; `retry_after` says when to come back."""


class Unavailable(DomainError):
    """Cannot be done now (something is missing, not ready or not configured); may work later."""


class Busy(Unavailable):
    """Another caller holds what this needs for a moment: try again after `retry_after`."""
    slug = "busy"


class CloudFailed(DomainError):
    """The cloud refused, failed or did not answer.

    `status` is the cloud's HTTP status (None when nothing came back); `retry_after` is how long to
    wait before trying again, when known.
    """

    def __init__(self, message, status=None, retry_after=None):
        super().__init__(message, retry_after=retry_after)
        self.message = message
        self.status = status

    @property
    def retryable(self):
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def rate_limited(self):
        return self.status == 429

    @property
    def slug(self):
        return "cloud-rate-limited" if self.rate_limited else "cloud-error"
