"""Notifications: release events read from the journal, sent to webhooks (DingTalk, Feishu, WeCom, Slack,
generic signed JSON) from an outbox with retries, apart from any release."""

from graylift.notify.channels import CHANNELS, EVENTS, Outgoing, render
from graylift.notify.events import event_of
from graylift.notify.notifier import Notifier

__all__ = ["CHANNELS", "EVENTS", "Notifier", "Outgoing", "event_of", "render"]
