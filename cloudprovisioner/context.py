"""What every domain function is given: the configuration, the store, who acts, and the cloud.

The web layer makes one per request, the monitor one per run, an admin command one per command.
The database and the cloud are opened on first use: a request that needs neither pays for neither
(the cloud client imports `requests` and the SDK, ~130 ms under CGI).
"""


class Context:
    def __init__(self, config, principal=None, *, db=None, cloud=None, cloud_budget=None, log=None):
        self.config = config
        # One line for the operator, never for the caller: the web server's error log, the monitor's output.
        self.log = log or _nowhere
        self.principal = principal  # auth.Principal; None for the platform itself (monitor, admin)
        self.target = ""  # the id of what the action is about, once known: the audit log's target
        self.actor = None  # (tenant_id, user_id) when known without a principal (a login, a registration)
        self._db = db
        self._cloud = cloud
        self._cloud_budget = cloud_budget  # seconds; the request's (CP_CLOUD_BUDGET) unless given

    @property
    def tenant_id(self):
        return self.principal.tenant_id

    @property
    def db(self):
        if self._db is None:
            from .db import Database
            self._db = Database(self.config)
        return self._db

    @property
    def cloud(self):
        """The cloud, under one time budget for everything this context asks of it."""
        if self._cloud is None:
            from .provider import Cloud
            budget = self.config.cloud_budget if self._cloud_budget is None else self._cloud_budget
            self._cloud = Cloud(self.config, budget)
        return self._cloud

    def close(self):
        if self._db is not None:
            self._db.close()


def _nowhere(message):
    pass
