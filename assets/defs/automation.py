"""The sensor that evaluates every asset's automation condition (``assets/shared/automation.py``)."""

from assets.shared.automation import automation_sensor

__all__ = ["automation_sensor"]
