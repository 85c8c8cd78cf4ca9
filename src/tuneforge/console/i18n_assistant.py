"""Console text of the assistant solution's page: ``key: (English, 中文)``,
merged into :data:`tuneforge.console.i18n.MESSAGES`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "nav.assistant": ("Assistant", "助手"),
}
