"""``automl server``: the service's front door, an HTTP API (FastAPI on uvicorn) in front of the job store.

It holds the job store's, the study storage's and MLflow's credentials; its users hold a token.
:mod:`~automl.server.app` builds the application, :mod:`~automl.server.auth` says who a request is
from, :mod:`~automl.server.api` answers the job endpoints, :mod:`~automl.server.limits` bounds what
a request may send, :mod:`~automl.server.config` reads the server's settings.

What must stay true: the server keeps no state of its own (everything is in the job store), so
several can run behind a load balancer; every answer to a bad request is a 4xx naming the problem,
never a traceback; a token's text never reaches a log line, an event or an error message.
"""

from __future__ import annotations

from automl.server.app import create_app

__all__ = ["create_app"]
