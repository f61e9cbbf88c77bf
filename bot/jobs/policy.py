"""Who may start which jobs: the operator's access settings, as the job skill applies them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccessPolicy:
    """Heavy commands are for ``admins``, unless they are open to all, or a user still has
    some of the daily ``user_job_quota`` left."""

    admins: frozenset[str] = frozenset()
    heavy_commands_open: bool = False
    user_job_quota: int = 0

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins
