"""One-time setup projects that the delivery pipeline relies on (see docs/delivery.md)."""
