"""A client of ``automl server``: :class:`RemoteJobService`, the :class:`~automl.service.job_service.JobService`
the CLI and the Python API use when ``AUTOML_SERVER`` is set (:func:`job_service` picks one).
"""

from __future__ import annotations

from automl.client.remote import SERVER_ENV, TOKEN_ENV, RemoteJobService, ServerError, server_from_env

__all__ = ["SERVER_ENV", "TOKEN_ENV", "RemoteJobService", "ServerError", "server_from_env"]
