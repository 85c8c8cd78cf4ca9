"""Alert delivery: a JSON webhook (signed with HMAC-SHA256 when the rule has a secret) and e-mail over SMTP.

Every delivery returns a :class:`Delivery` (``ok`` or the error) instead of raising: one broken channel must
not stop the others, and what happened is stored with the alert.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from tuneforge.errors import InvalidRequestError
from tuneforge.utils.net import check_public_url, public_client

__all__ = ["Delivery", "SmtpSettings", "alert_text", "public_webhook", "send_email", "send_webhook", "sign"]

SIGNATURE_HEADER = "X-TuneForge-Signature"


@dataclass(frozen=True)
class Delivery:
    channel: str
    target: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "target": self.target, "ok": self.ok, "detail": self.detail}


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>"); the receiver recomputes it to verify."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(url: str, payload: dict[str, Any], *, secret: str | None = None, retries: int = 2,
                 timeout_s: float = 10.0, backoff_s: float = 0.5, client: httpx.Client | None = None) -> Delivery:
    """POST ``payload`` as JSON; retried on connection errors and 5xx/429 with exponential backoff."""
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "TuneForgeMonitor/1.0",
               "X-TuneForge-Timestamp": ts}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body, ts)
    own = client is None
    c = client or httpx.Client(timeout=timeout_s)
    detail = ""
    try:
        for attempt in range(retries + 1):
            try:
                r = c.post(url, content=body, headers=headers)
                if r.status_code < 300:
                    return Delivery("webhook", url, True, f"HTTP {r.status_code}")
                detail = f"HTTP {r.status_code}"
                if r.status_code < 500 and r.status_code != 429:
                    break  # the receiver refused it; repeating will not help
            except httpx.HTTPError as e:
                detail = f"{type(e).__name__}: {e}"
            if attempt < retries:
                time.sleep(backoff_s * 2 ** attempt)
    finally:
        if own:
            c.close()
    return Delivery("webhook", url, False, detail)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    sender: str = "tuneforge-monitor@localhost"
    starttls: bool = True
    timeout_s: float = 15.0


def send_email(smtp: SmtpSettings, to: Sequence[str], subject: str, body: str) -> Delivery:
    """One message to every address in ``to``."""
    target = ", ".join(to)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, target, subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as s:
            s.ehlo()
            if smtp.starttls and s.has_extn("starttls"):
                s.starttls(context=ssl.create_default_context())
                s.ehlo()
            if smtp.username:
                s.login(smtp.username, smtp.password or "")
            s.send_message(msg)
    except (OSError, smtplib.SMTPException) as e:
        return Delivery("email", target, False, f"{type(e).__name__}: {e}")
    return Delivery("email", target, True, "sent")


def alert_text(alert: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of an alert e-mail (the triggering items listed)."""
    metric = alert["metric"].replace("_", " ")
    subject = f"[TuneForge monitor] {alert['entity']}: {metric} {alert['value']:.2f} (expected {alert['expected']:.2f})"
    lines = [f"Rule: {alert.get('rule_name') or alert.get('rule_id')}",
             f"Entity: {alert['entity']}", f"At: {alert['at']}",
             f"{metric}: {alert['value']:.3f} against a baseline of {alert['expected']:.3f} (z = {alert['z']:.1f}, "
             f"{alert['window_items']} items in the window)", "", "Items that triggered it:"]
    for it in alert.get("items", [])[:20]:
        lines.append(f"- [{it.get('label')}] {it.get('published_at')} {it.get('text', '')[:200]}"
                     + (f" <{it['url']}>" if it.get("url") else ""))
    return subject, "\n".join(lines) + "\n"


def public_webhook(url: str, payload: dict[str, Any], **kwargs: Any) -> Delivery:
    """:func:`send_webhook` to public hosts only (what the service sends for its tenants): a private or local
    address is recorded as a failed delivery."""
    try:
        check_public_url(url, param="webhook_url")
    except InvalidRequestError as e:
        return Delivery("webhook", url, False, str(e))
    with public_client(timeout=10.0) as client:
        return send_webhook(url, payload, client=client, **kwargs)
