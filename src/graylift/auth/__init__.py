"""Who may do what through the server: users, hashed tokens and sessions, roles per app x environment,
approvals, freeze windows and the audit log. :class:`Desk` is the one door every action goes through."""

from graylift.auth.desk import Actor, AppEnv, Desk, Frozen, InputError, Started, local_actor
from graylift.auth.roles import ANY, Action, Denied, Grant, Role, Unauthenticated, role_on

__all__ = ["ANY", "Action", "Actor", "AppEnv", "Denied", "Desk", "Frozen", "Grant", "InputError", "Role", "Started",
           "Unauthenticated", "local_actor", "role_on"]
