"""Errors in DigitalOcean's shape ({"id", "message", "request_id"}) and the
shortcuts the handlers raise them with."""


class ApiError(Exception):
    """An error answer in DigitalOcean's shape: {"id", "message", "request_id"}."""

    def __init__(self, status, error_id, message, headers=None, extra=None):
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the body, for endpoints whose error model has them


def is_number(text):
    """Only ASCII digits: str.isdigit() also accepts "²", which int() rejects."""
    return text.isascii() and text.isdigit()


def not_found():
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(message):
    return ApiError(422, "unprocessable_entity", message)


def bad_request(message):
    return ApiError(400, "bad_request", message)


def tag_bad_request(message):
    """POST /v2/tags documents its 400 with another model (tags_bad_request:
    error, root_causes, messages); id and message stay too, so a client that
    reads DigitalOcean's usual error shape (python-digitalocean) still can."""
    return ApiError(400, "bad_request", message,
                    extra={"error": message, "root_causes": [message], "messages": None})


def forbidden(message):
    return ApiError(403, "forbidden", message)
