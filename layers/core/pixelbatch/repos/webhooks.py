"""The users' webhook endpoints (one row per endpoint under the owner's partition) and the
queue their deliveries wait in."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from pixelbatch.errors import TooManyWebhooks
from pixelbatch.models import Webhook


class WebhookStore:
    def __init__(self, dynamodb: Any, *, table: str) -> None:
        self._table = dynamodb.Table(table)

    def add(self, webhook: Webhook, *, limit: int) -> None:
        """Refuse past ``limit`` endpoints. Two concurrent adds may both pass the count: a
        limit is a guard against mistakes, not a quota."""
        if self.count(webhook.owner_id) >= limit:
            raise TooManyWebhooks()
        self._table.put_item(
            Item={
                "owner_id": webhook.owner_id, "webhook_id": webhook.webhook_id,
                "url": webhook.url, "secret": webhook.secret, "created_at": webhook.created_at,
            },
            ConditionExpression="attribute_not_exists(webhook_id)",
        )

    def count(self, owner_id: str) -> int:
        reply = self._table.query(KeyConditionExpression=Key("owner_id").eq(owner_id),
                                  Select="COUNT")
        return int(reply.get("Count", 0))

    def list_for(self, owner_id: str) -> list[Webhook]:
        reply = self._table.query(KeyConditionExpression=Key("owner_id").eq(owner_id))
        return sorted((_webhook(row) for row in reply.get("Items", [])),
                      key=lambda hook: hook.created_at)

    def get(self, owner_id: str, webhook_id: str) -> Webhook | None:
        row = self._table.get_item(
            Key={"owner_id": owner_id, "webhook_id": webhook_id}
        ).get("Item")
        return _webhook(row) if row else None

    def delete(self, owner_id: str, webhook_id: str) -> bool:
        try:
            self._table.delete_item(
                Key={"owner_id": owner_id, "webhook_id": webhook_id},
                ConditionExpression="attribute_exists(webhook_id)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _webhook(row: dict[str, Any]) -> Webhook:
    return Webhook(
        webhook_id=str(row["webhook_id"]), owner_id=str(row["owner_id"]), url=str(row["url"]),
        secret=str(row["secret"]), created_at=str(row["created_at"]),
    )


class DeliveryQueue:
    """SQS: one message per (event, endpoint)."""

    def __init__(self, sqs: Any, *, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, body: str) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=body)

    def retry_after(self, receipt_handle: str, seconds: int) -> None:
        """Hide a message that failed for ``seconds``: the next receive is the next attempt."""
        self._sqs.change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
