"""Wiring: every store and service built from the settings, each on first use.

A function imports only the services it calls and creates only the AWS clients they use (see
``AwsClients``), so a cold start pays for neither the modules nor the clients it never needs.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from pixelbatch.aws import AwsClients
from pixelbatch.settings import Settings

if TYPE_CHECKING:
    from pixelbatch.imaging.fetch import FetchPolicy
    from pixelbatch.repos.accounts import AccountStore
    from pixelbatch.repos.objects import ObjectStore
    from pixelbatch.repos.tasks import TaskStore
    from pixelbatch.services.account import AccountService
    from pixelbatch.services.catalog import CatalogService
    from pixelbatch.services.processing import ProcessingService
    from pixelbatch.services.tasks import TaskService
    from pixelbatch.services.webhooks import DeliveryService, WebhookAnnouncer, WebhookService


class Container:
    def __init__(
        self, settings: Settings, clients: AwsClients, fetch_policy: FetchPolicy | None = None
    ) -> None:
        self.settings = settings
        self.clients = clients
        self._fetch_policy = fetch_policy

    @cached_property
    def task_store(self) -> TaskStore:
        from pixelbatch.repos.tasks import TaskStore

        s = self.settings
        return TaskStore(self.clients.dynamodb, tasks_table=s.tasks_table,
                         accounts_table=s.accounts_table, ledger_table=s.ledger_table,
                         retention_seconds=s.task_retention_days * 24 * 3600)

    @cached_property
    def account_store(self) -> AccountStore:
        from pixelbatch.repos.accounts import AccountStore

        s = self.settings
        return AccountStore(self.clients.dynamodb, accounts_table=s.accounts_table,
                            ledger_table=s.ledger_table)

    @cached_property
    def catalog(self) -> CatalogService:
        from pixelbatch.repos.catalog import CatalogStore
        from pixelbatch.services.catalog import CatalogService

        s = self.settings
        return CatalogService(CatalogStore(self.clients.dynamodb, features_table=s.features_table,
                                           pipelines_table=s.pipelines_table))

    @cached_property
    def objects(self) -> ObjectStore:
        from pixelbatch.repos.objects import ObjectStore

        return ObjectStore(self.clients.s3, presign_ttl_seconds=self.settings.presign_ttl_seconds)

    @cached_property
    def tasks(self) -> TaskService:
        from pixelbatch.repos.executions import ExecutionStarter
        from pixelbatch.repos.ratelimit import RateLimitStore
        from pixelbatch.services.catalog import RateLimiter
        from pixelbatch.services.tasks import TaskService

        s = self.settings
        return TaskService(
            s, tasks=self.task_store, accounts=self.account_store, catalog=self.catalog,
            limiter=RateLimiter(RateLimitStore(self.clients.dynamodb, table=s.rate_limit_table)),
            executions=ExecutionStarter(self.clients.sfn, state_machine_arn=s.state_machine_arn),
            objects=self.objects, webhooks=self.announcer,
        )

    @cached_property
    def accounts(self) -> AccountService:
        from pixelbatch.services.account import AccountService

        return AccountService(self.settings, accounts=self.account_store, catalog=self.catalog,
                              objects=self.objects)

    @cached_property
    def processing(self) -> ProcessingService:
        from pixelbatch.imaging.fetch import FetchPolicy
        from pixelbatch.repos.events import EventPublisher
        from pixelbatch.services.processing import ProcessingService

        s = self.settings
        policy = self._fetch_policy or FetchPolicy(allowed_hosts=s.image_url_allowlist)
        return ProcessingService(
            s, tasks=self.task_store, objects=self.objects, fetch_policy=policy,
            events=EventPublisher(self.clients.events, bus_name=s.event_bus_name),
            webhooks=self.announcer,
        )

    @cached_property
    def webhooks(self) -> WebhookService:
        return build_webhook_service(self.settings, self.clients)

    @cached_property
    def deliveries(self) -> DeliveryService:
        return build_delivery_service(self.settings, self.clients)

    @cached_property
    def announcer(self) -> WebhookAnnouncer | None:
        """Only the functions that finalize tasks are given the webhooks table and queue."""
        from pixelbatch.repos.webhooks import DeliveryQueue, WebhookStore
        from pixelbatch.services.webhooks import WebhookAnnouncer

        s = self.settings
        if s.webhooks_table is None or s.webhook_queue_url is None:
            return None
        return WebhookAnnouncer(
            WebhookStore(self.clients.dynamodb, table=s.webhooks_table),
            DeliveryQueue(self.clients.sqs, queue_url=s.webhook_queue_url), self.task_store,
        )


def build_container(
    settings: Settings | None = None,
    clients: AwsClients | None = None,
    fetch_policy: FetchPolicy | None = None,
) -> Container:
    """The settings are read now (a cold start fails fast on a missing one); the rest waits."""
    return Container(settings or Settings.from_env(), clients or AwsClients(), fetch_policy)


class MissingSetting(RuntimeError):
    """The function's environment lacks a variable its code needs (a template mistake)."""


def require_settings(settings: Settings, *names: str) -> None:
    """Settings that only some functions need, checked at their cold start while the services
    that use them wait for their first use."""
    missing = [name.upper() for name in names if getattr(settings, name) is None]
    if missing:
        raise MissingSetting(" and ".join(missing))


def build_webhook_service(settings: Settings, clients: AwsClients) -> WebhookService:
    from pixelbatch.repos.webhooks import WebhookStore
    from pixelbatch.services.webhooks import WebhookService

    if settings.webhooks_table is None:
        raise MissingSetting("WEBHOOKS_TABLE")
    return WebhookService(WebhookStore(clients.dynamodb, table=settings.webhooks_table),
                          loopback_receivers=settings.webhook_loopback_receivers)


def build_delivery_service(settings: Settings, clients: AwsClients) -> DeliveryService:
    from pixelbatch.imaging.fetch import ReceiverPolicy
    from pixelbatch.repos.webhooks import DeliveryQueue, WebhookStore
    from pixelbatch.services.webhooks import DeliveryService

    if settings.webhooks_table is None or settings.webhook_queue_url is None:
        raise MissingSetting("WEBHOOKS_TABLE and WEBHOOK_QUEUE_URL")
    return DeliveryService(
        WebhookStore(clients.dynamodb, table=settings.webhooks_table),
        DeliveryQueue(clients.sqs, queue_url=settings.webhook_queue_url),
        ReceiverPolicy(loopback_http=settings.webhook_loopback_receivers),
    )
