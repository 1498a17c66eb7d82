"""Accounts outside the task flow: opened by the Cognito post-confirmation trigger (the real
handler, the real event shape from events/), adjusted by the admin CLI. Every operation keeps
the money rule with grants and deductions counted:
sum(grant) - sum(deduct) - balance == sum(charge) - sum(refund)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pixelbatch import admin
from pixelbatch.errors import DomainError

from tests.integration.conftest import Stack
from tests.integration.test_processing import JUNK, create, photo_urls, run_round, upload
from tests.support.http_events import REPO

SIGNUP_EVENT = json.loads((REPO / "events/cognito_post_confirmation.json").read_text())
PASSWORD_RESET_EVENT = json.loads(
    (REPO / "events/cognito_post_confirmation_forgot_password.json").read_text()
)
SIGN = {"grant": 1, "deduct": -1}
SPEND = {"charge": 1, "refund": -1}


def signup_event(sub: str, source: dict[str, Any] = SIGNUP_EVENT) -> dict[str, Any]:
    event = copy.deepcopy(source)
    event["userName"] = event["request"]["userAttributes"]["sub"] = sub
    return event


def money_problem(stack: Stack, user: str) -> str | None:
    """The money rule for one user, from the raw ledger rows; None when it holds."""
    rows = stack.ledger(user)
    granted = sum(SIGN.get(row["kind"], 0) * int(row["amount"]) for row in rows)
    spent = sum(SPEND.get(row["kind"], 0) * int(row["amount"]) for row in rows)
    balance = stack.balance(user)
    if granted - balance != spent or balance < 0:
        return f"granted {granted} - balance {balance} != charges - refunds {spent}"
    return None


def run_admin(stack: Stack, *argv: str) -> dict[str, Any]:
    tables = ["--accounts-table", stack.env["ACCOUNTS_TABLE"],
              "--ledger-table", stack.env["LEDGER_TABLE"]]
    return admin.run([*tables, "--actor", "arn:aws:iam::123456789012:user/ops", *argv])


def kinds(stack: Stack, user: str) -> list[str]:
    return sorted(str(row["kind"]) for row in stack.ledger(user))


# ---------------------------------------------------------------------- the signup trigger


def test_a_confirmation_delivered_twice_opens_one_account_with_one_grant(stack: Stack) -> None:
    # Given the real post-confirmation event for a new user
    event = signup_event("c0ffee00-1111-4222-8333-444455556666")
    # When Cognito delivers it twice
    first = stack.invoke("AccountSignupFunction", copy.deepcopy(event))
    second = stack.invoke("AccountSignupFunction", copy.deepcopy(event))
    # Then the trigger hands the event back each time, and there is one account, one grant
    assert first == event and second == event
    user = event["request"]["userAttributes"]["sub"]
    grant = int(stack.env["SIGNUP_GRANT_QUOTA"])
    assert stack.balance(user) == grant > 0
    [row] = stack.ledger(user)
    assert (row["kind"], int(row["amount"]), row["entry_id"]) == ("grant", grant, "grant#signup")
    account = stack.call("GET", "/api/quota", user=user)
    assert (account.body["data"]["balance"], account.body["data"]["plan"]) == (grant, "free")
    assert money_problem(stack, user) is None


def test_a_password_reset_confirmation_opens_nothing(stack: Stack) -> None:
    event = signup_event("reset-only-user", PASSWORD_RESET_EVENT)
    assert stack.invoke("AccountSignupFunction", copy.deepcopy(event)) == event
    assert stack.ledger("reset-only-user") == []


def test_a_new_user_can_spend_the_signup_grant(stack: Stack) -> None:
    user = "fresh-signup"
    stack.invoke("AccountSignupFunction", signup_event(user))
    reply = stack.call("POST", "/api/tasks/batch", user=user, body={
        "feature_id": "basic_clean", "input_images": photo_urls(stack, user, 2),
        "input_data": {}})
    assert reply.status == 200, reply.body
    assert money_problem(stack, user) is None


# ---------------------------------------------------------------------- the admin CLI


@pytest.fixture
def spender(stack: Stack) -> str:
    """A signed-up user with one batch behind them: 2 images kept, 1 refunded."""
    user = "spender"
    stack.invoke("AccountSignupFunction", signup_event(user))
    urls = [*photo_urls(stack, user, 2), upload(stack, user, "junk.jpg", JUNK)]
    task_id = create(stack, user, urls)
    run_round(stack, task_id)
    assert kinds(stack, user) == ["charge", "grant", "refund"]
    assert money_problem(stack, user) is None
    return user


def test_grant_adds_quota_with_a_ledger_row_and_happens_once(stack: Stack, spender: str) -> None:
    before = stack.balance(spender)
    result = run_admin(stack, "grant", spender, "500", "--reason", "order 1042",
                       "--request-id", "order-1042")
    assert result == {"user_id": spender, "applied": "grant", "request_id": "order-1042"}
    assert stack.balance(spender) == before + 500
    row = next(r for r in stack.ledger(spender) if r["entry_id"] == "grant#admin#order-1042")
    assert (row["reason"], row["actor"]) == ("order 1042", "arn:aws:iam::123456789012:user/ops")
    assert admin.main([
        "--accounts-table", stack.env["ACCOUNTS_TABLE"], "--ledger-table",
        stack.env["LEDGER_TABLE"], "--actor", "ops", "grant", spender, "500", "--reason",
        "order 1042", "--request-id", "order-1042"]) == admin.EXIT_FAILED
    assert stack.balance(spender) == before + 500
    assert money_problem(stack, spender) is None


def test_deduct_removes_quota_but_never_below_zero(stack: Stack, spender: str) -> None:
    before = stack.balance(spender)
    run_admin(stack, "deduct", spender, "3", "--reason", "chargeback")
    assert stack.balance(spender) == before - 3
    assert kinds(stack, spender).count("deduct") == 1
    assert money_problem(stack, spender) is None
    with pytest.raises(DomainError, match="配额不足"):
        run_admin(stack, "deduct", spender, str(before), "--reason", "too much")
    assert stack.balance(spender) == before - 3
    assert kinds(stack, spender).count("deduct") == 1
    assert money_problem(stack, spender) is None


def test_plan_change_is_recorded_and_moves_no_quota(stack: Stack, spender: str) -> None:
    before = stack.balance(spender)
    run_admin(stack, "plan", spender, "pro", "--reason", "upgrade", "--request-id", "up-1")
    assert stack.call("GET", "/api/quota", user=spender).body["data"]["plan"] == "pro"
    row = next(r for r in stack.ledger(spender) if r["kind"] == "plan")
    assert (row["plan_from"], row["plan_to"], int(row["amount"])) == ("free", "pro", 0)
    assert stack.balance(spender) == before
    assert money_problem(stack, spender) is None


def test_open_makes_a_missing_account_once(stack: Stack) -> None:
    assert run_admin(stack, "open", "missed", "--reason", "trigger failed") == {
        "user_id": "missed", "created": True}
    assert run_admin(stack, "open", "missed", "--reason", "again") == {
        "user_id": "missed", "created": False}
    assert kinds(stack, "missed") == ["grant"]
    assert money_problem(stack, "missed") is None


def test_show_reports_the_account(stack: Stack, spender: str) -> None:
    shown = run_admin(stack, "show", spender)
    assert shown["balance"] == stack.balance(spender) and shown["plan"] == "free"
    assert {row["kind"] for row in shown["ledger"]} == {"grant", "charge", "refund"}
    assert run_admin(stack, "show", "nobody") == {"user_id": "nobody", "exists": False}


@pytest.mark.parametrize("argv", [
    ("grant", "nobody", "5", "--reason", "x"),
    ("deduct", "nobody", "5", "--reason", "x"),
    ("plan", "nobody", "pro", "--reason", "x"),
])
def test_adjusting_a_missing_account_writes_nothing(stack: Stack, argv: tuple[str, ...]) -> None:
    with pytest.raises(DomainError, match="账户不存在"):
        run_admin(stack, *argv)
    assert stack.ledger("nobody") == []


@pytest.mark.parametrize("argv", [
    ("grant", "spender", "0", "--reason", "x"),
    ("deduct", "spender", "-4", "--reason", "x"),
    ("grant", "spender", "5", "--reason", "   "),
    ("grant", "spender", "5", "--reason", "x", "--request-id", "a#b"),
])
def test_bad_adjustments_are_refused_before_any_write(
    stack: Stack, spender: str, argv: tuple[str, ...]
) -> None:
    rows = len(stack.ledger(spender))
    with pytest.raises(DomainError):
        run_admin(stack, *argv)
    assert len(stack.ledger(spender)) == rows


def test_every_admin_operation_in_sequence_keeps_the_money_rule(
    stack: Stack, spender: str
) -> None:
    steps = [
        ("grant", spender, "40", "--reason", "top-up"),
        ("deduct", spender, "15", "--reason", "correction"),
        ("plan", spender, "enterprise", "--reason", "contract"),
        ("grant", spender, "1", "--reason", "goodwill"),
        ("plan", spender, "free", "--reason", "contract ended"),
        ("deduct", spender, "1", "--reason", "goodwill reverted"),
    ]
    for step in steps:
        run_admin(stack, *step)
        assert money_problem(stack, spender) is None, step
    # And spending after the adjustments still balances
    task_id = create(stack, spender, photo_urls(stack, spender, 1))
    run_round(stack, task_id)
    assert money_problem(stack, spender) is None
