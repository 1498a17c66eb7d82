"""What the Cognito post-confirmation trigger does, apart from the Lambda plumbing."""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.metrics import MetricUnit

from pixelbatch.aws import AwsClients
from pixelbatch.observability import logger, metrics
from pixelbatch.repos.accounts import AccountStore
from pixelbatch.services.lifecycle import AccountLifecycle
from pixelbatch.settings import AccountSettings

# A password reset also confirms a user: only a sign-up opens an account.
SIGN_UP_TRIGGERS = frozenset({"PostConfirmation_ConfirmSignUp"})


def build_lifecycle(settings: AccountSettings | None = None,
                    clients: AwsClients | None = None) -> AccountLifecycle:
    settings = settings or AccountSettings.from_env()
    clients = clients or AwsClients()
    store = AccountStore(clients.dynamodb, accounts_table=settings.accounts_table,
                         ledger_table=settings.ledger_table)
    return AccountLifecycle(store, signup_grant=settings.signup_grant_quota)


def on_confirmed(lifecycle: AccountLifecycle, trigger_source: str,
                 user_attributes: Mapping[str, str]) -> None:
    if trigger_source not in SIGN_UP_TRIGGERS:
        logger.info("not a sign-up confirmation", trigger_source=trigger_source)
        return
    # The API's JWT authorizer identifies users by `sub`: the account is keyed the same way.
    user_id = user_attributes["sub"]
    created = lifecycle.sign_up(user_id)
    logger.info("account opened" if created else "account already open", user_id=user_id)
    if created:
        metrics.add_metric(name="AccountsOpened", unit=MetricUnit.Count, value=1)
