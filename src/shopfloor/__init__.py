"""Shopfloor: the runtime and control plane for long-running AI agents."""

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ShopfloorError

__all__ = ["Settings", "ShopfloorError", "load_settings"]
