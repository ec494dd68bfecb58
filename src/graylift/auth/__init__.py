"""Who may do what through the server: users, hashed tokens and sessions, roles per app x environment,
approvals, freeze windows and the audit log. :class:`Desk` is the one door every action goes through."""

from graylift.auth.accounts import local_actor
from graylift.auth.base import Actor, Frozen, InputError
from graylift.auth.desk import Desk
from graylift.auth.releases import AppEnv, Started
from graylift.auth.roles import ANY, Action, Denied, Grant, Role, Unauthenticated, role_on

__all__ = ["ANY", "Action", "Actor", "AppEnv", "Denied", "Desk", "Frozen", "Grant", "InputError", "Role", "Started",
           "Unauthenticated", "local_actor", "role_on"]
