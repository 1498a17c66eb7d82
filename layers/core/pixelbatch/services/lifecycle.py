"""An account's life outside the task flow: opened at signup, adjusted by an operator, and (on
the local stack only) reset for a dev user. Every path writes through AccountStore, so each
change is one transaction with its ledger row."""

from __future__ import annotations

from pixelbatch.errors import InvalidRequest
from pixelbatch.models import PLANS
from pixelbatch.repos.accounts import AccountStore, Adjustment

SIGNUP_PLAN = "free"
SIGNUP_ACTOR = "cognito:post-confirmation"


class AccountLifecycle:
    def __init__(self, accounts: AccountStore, *, signup_grant: int) -> None:
        self._accounts = accounts
        self._signup_grant = signup_grant

    def sign_up(self, user_id: str) -> bool:
        """The account a confirmed user starts with; False when it exists already."""
        return self.open(user_id, plan=SIGNUP_PLAN, grant=self._signup_grant,
                         reason="signup", actor=SIGNUP_ACTOR)

    def open(self, user_id: str, *, plan: str, grant: int, reason: str, actor: str) -> bool:
        _check_user(user_id)
        _check_plan(plan)
        if grant < 0:
            raise InvalidRequest("grant must be >= 0")
        return self._accounts.open(user_id, plan=plan, grant=grant, reason=_reason(reason),
                                   actor=actor)

    def grant(self, user_id: str, amount: int, adjustment: Adjustment) -> None:
        self._accounts.adjust_balance(user_id, _positive(amount), _checked(adjustment))

    def deduct(self, user_id: str, amount: int, adjustment: Adjustment) -> None:
        self._accounts.adjust_balance(user_id, -_positive(amount), _checked(adjustment))

    def change_plan(self, user_id: str, plan: str, adjustment: Adjustment) -> None:
        _check_plan(plan)
        self._accounts.change_plan(user_id, plan, _checked(adjustment))

    def reset(self, user_id: str, *, quota: int, plan: str) -> None:
        """Local dev users: start over with a fresh account and one grant of `quota`."""
        _check_user(user_id)
        self._accounts.erase(user_id)
        self.open(user_id, plan=plan, grant=quota, reason="local dev user", actor="devstack")


def _check_user(user_id: str) -> None:
    if not user_id.strip():
        raise InvalidRequest("user id must not be blank")


def _check_plan(plan: str) -> None:
    if plan not in PLANS:
        raise InvalidRequest(f"plan must be one of {', '.join(PLANS)}")


def _positive(amount: int) -> int:
    if amount <= 0:
        raise InvalidRequest("amount must be a positive whole number")
    return amount


def _reason(reason: str) -> str:
    if not reason.strip():
        raise InvalidRequest("a reason is required: it is kept in the ledger")
    return reason.strip()


def _checked(adjustment: Adjustment) -> Adjustment:
    if not adjustment.request_id.strip() or "#" in adjustment.request_id:
        raise InvalidRequest("request id must be non-blank and contain no '#'")
    return Adjustment(adjustment.request_id, _reason(adjustment.reason), adjustment.actor)
