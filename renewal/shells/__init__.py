"""I/O shells: Key Vault, the journal, webhooks and the outcome topic. Each translates its service's errors into
``renewal.errors`` at its edge, and none imports ``renewal.flow`` (an import-linter contract keeps it so)."""
