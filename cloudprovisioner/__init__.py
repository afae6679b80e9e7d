"""CloudProvisioner: create, track and destroy cloud VMs through a REST API.

Nothing is imported here on purpose: every CGI request imports this package,
and each import costs start-up time.
"""

__version__ = "0.1.0"

# The highest migration in sql/ this code expects (checked by /health; a test keeps it in step).
SCHEMA_VERSION = 16
