"""One error family for the whole service.

Services raise Django's ``ValidationError`` for bad input and subclasses of
``ApplicationError`` for state conflicts and upstream failures; the DRF
handler and the admin render both the same way.
"""


class ApplicationError(Exception):
    code = "application_error"
    http_status = 400

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404


class Conflict(ApplicationError):
    code = "conflict"
    http_status = 409


class ServiceUnavailable(ApplicationError):
    code = "service_unavailable"
    http_status = 503
