"""Wiring: build every store and service once per cold start from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from pixelbatch.aws import AwsClients
from pixelbatch.imaging.fetch import FetchPolicy, ReceiverPolicy
from pixelbatch.repos.accounts import AccountStore
from pixelbatch.repos.catalog import CatalogStore
from pixelbatch.repos.events import EventPublisher
from pixelbatch.repos.executions import ExecutionStarter
from pixelbatch.repos.objects import ObjectStore
from pixelbatch.repos.ratelimit import RateLimitStore
from pixelbatch.repos.tasks import TaskStore
from pixelbatch.repos.webhooks import DeliveryQueue, WebhookStore
from pixelbatch.services.account import AccountService
from pixelbatch.services.catalog import CatalogService, RateLimiter
from pixelbatch.services.processing import ProcessingService
from pixelbatch.services.tasks import TaskService
from pixelbatch.services.webhooks import DeliveryService, WebhookAnnouncer, WebhookService
from pixelbatch.settings import Settings


@dataclass(frozen=True)
class Container:
    settings: Settings
    task_store: TaskStore
    account_store: AccountStore
    tasks: TaskService
    accounts: AccountService
    processing: ProcessingService
    clients: AwsClients


def build_container(
    settings: Settings | None = None,
    clients: AwsClients | None = None,
    fetch_policy: FetchPolicy | None = None,
) -> Container:
    settings = settings or Settings.from_env()
    clients = clients or AwsClients()
    task_store = TaskStore(
        clients.dynamodb, tasks_table=settings.tasks_table,
        accounts_table=settings.accounts_table, ledger_table=settings.ledger_table,
        retention_seconds=settings.task_retention_days * 24 * 3600,
    )
    account_store = AccountStore(
        clients.dynamodb, accounts_table=settings.accounts_table,
        ledger_table=settings.ledger_table,
    )
    catalog = CatalogService(CatalogStore(
        clients.dynamodb, features_table=settings.features_table,
        pipelines_table=settings.pipelines_table,
    ))
    objects = ObjectStore(clients.s3, presign_ttl_seconds=settings.presign_ttl_seconds)
    policy = fetch_policy or FetchPolicy(allowed_hosts=settings.image_url_allowlist)
    return Container(
        settings=settings,
        clients=clients,
        task_store=task_store,
        account_store=account_store,
        tasks=TaskService(
            settings, tasks=task_store, accounts=account_store, catalog=catalog,
            limiter=RateLimiter(RateLimitStore(clients.dynamodb, table=settings.rate_limit_table)),
            executions=ExecutionStarter(clients.sfn, state_machine_arn=settings.state_machine_arn),
            objects=objects, webhooks=_announcer(settings, clients, task_store),
        ),
        accounts=AccountService(settings, accounts=account_store, catalog=catalog,
                                objects=objects),
        processing=ProcessingService(
            settings, tasks=task_store, objects=objects, fetch_policy=policy,
            events=EventPublisher(clients.events, bus_name=settings.event_bus_name),
            webhooks=_announcer(settings, clients, task_store),
        ),
    )


def _announcer(settings: Settings, clients: AwsClients,
               task_store: TaskStore) -> WebhookAnnouncer | None:
    """Only the functions that finalize tasks are given the webhooks table and queue."""
    if settings.webhooks_table is None or settings.webhook_queue_url is None:
        return None
    return WebhookAnnouncer(
        WebhookStore(clients.dynamodb, table=settings.webhooks_table),
        DeliveryQueue(clients.sqs, queue_url=settings.webhook_queue_url), task_store,
    )


class MissingSetting(RuntimeError):
    """The function's environment lacks a variable its code needs (a template mistake)."""


def build_webhook_service(settings: Settings, clients: AwsClients) -> WebhookService:
    if settings.webhooks_table is None:
        raise MissingSetting("WEBHOOKS_TABLE")
    return WebhookService(WebhookStore(clients.dynamodb, table=settings.webhooks_table),
                          loopback_receivers=settings.webhook_loopback_receivers)


def build_delivery_service(settings: Settings, clients: AwsClients) -> DeliveryService:
    if settings.webhooks_table is None or settings.webhook_queue_url is None:
        raise MissingSetting("WEBHOOKS_TABLE and WEBHOOK_QUEUE_URL")
    return DeliveryService(
        WebhookStore(clients.dynamodb, table=settings.webhooks_table),
        DeliveryQueue(clients.sqs, queue_url=settings.webhook_queue_url),
        ReceiverPolicy(loopback_http=settings.webhook_loopback_receivers),
    )
