"""crmkit: the shared runtime of the CRM services. No domain logic lives here."""

from crmkit.auth import Authenticator, Principal, issue_token, require
from crmkit.problems import NotFound, Problem
from crmkit.runtime import Runtime
from crmkit.settings import InfraSettings, ServiceSettings
from crmkit.web import create_service_app, serve

__all__ = [
    "Authenticator",
    "InfraSettings",
    "NotFound",
    "Principal",
    "Problem",
    "Runtime",
    "ServiceSettings",
    "create_service_app",
    "issue_token",
    "require",
    "serve",
]
