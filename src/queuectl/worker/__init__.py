"""Running jobs: ``supervisor`` (slots, claims, leases, signals) -> ``runner`` (one attempt)."""
