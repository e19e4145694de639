"""Organisations: a member's videos are paid from the organisation's account.

An organisation is an ordinary account (id = the organisation id) marked as one when the first
member joins. Membership is one level deep: an organisation cannot join another organisation,
and an account that is a member cannot become an organisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.errors import ErrorKind, ServiceError


@dataclass(frozen=True)
class Account:
    id: str
    organisation_id: str | None = None
    is_organisation: bool = False

    @property
    def paying_account_id(self) -> str:
        return self.organisation_id or self.id


def check_membership(account: Account, organisation: Account) -> None:
    """May `account` join `organisation`? Both as locked in the same transaction."""
    if account.id == organisation.id:
        raise ServiceError(
            ErrorKind.INVALID_ARGUMENT,
            "An account cannot be a member of itself.",
            param="organisation_id",
        )
    if account.is_organisation:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            f"Account {account.id} is an organisation's account, so it cannot join an organisation.",
            param="account_id",
            code="account_is_organisation",
        )
    if organisation.organisation_id is not None:
        raise ServiceError(
            ErrorKind.FAILED_PRECONDITION,
            f"Account {organisation.id} is a member of organisation {organisation.organisation_id}, "
            "so it cannot be an organisation.",
            param="organisation_id",
            code="organisation_is_member",
        )
