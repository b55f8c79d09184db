"""What a renewal needs, composed once from the settings: the one place dependencies are built or injected.

``build_runtime(settings, *, adapters=..., clock=..., rng=..., checkpoint=...)`` builds a frozen ``Runtime``; a test
passes what it wants to control (a CA adapter for a profile, the clock, the journal) and gets the real parts for
the rest. Nothing is patched, and no module-level registry changes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from renewal.ca import CAAdapter, CAProfile, adapter_for
from renewal.flow.deliveries import Deliverer
from renewal.pure.redact import SecretScrubber, scrub
from renewal.settings import Settings
from renewal.shells.journal import Journal, RenewalJournal, table_client_from_environ
from renewal.shells.keyvault import KeyVaultClients, StaticTokenCredential, is_loopback_url
from renewal.shells.metrics import Metrics, NoMetrics
from renewal.shells.senders import OutboxSender
from renewal.shells.webhooks import WebhookSender

if TYPE_CHECKING:
    from renewal.shells.arm import ArmClient
    from renewal.shells.pacing import Pacer
    from renewal.shells.rollouts import RolloutStore
    from renewal.shells.topic import OutcomeTopic

__all__ = [
    "Checkpoint",
    "Clock",
    "Runtime",
    "build_runtime",
    "log_retries_at_debug",
    "quiet_sdk_loggers",
    "system_clock",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Called with each step's name as the renewal passes it (renewal.steps.Step, and "deliver:sent" after each send):
# a no-op in production, a crash point in the crash-resume tests.
Checkpoint = Callable[[str], None]


def system_clock() -> datetime:
    """The wall clock, tz-aware UTC: the one place the app reads it."""
    return datetime.now(UTC)


def _no_checkpoint(step: str) -> None:
    """Production passes every step without stopping."""


def log_retries_at_debug() -> None:
    """stamina logs every retry at WARNING by default: a throttled storm would log hundreds. Ours are expected
    and bounded (the outcome says what came of them), so they go to DEBUG."""
    import stamina.instrumentation

    def log_retry(details: stamina.instrumentation.RetryDetails) -> None:
        logger.debug(
            "retry name=%s attempt=%d wait_seconds=%.2f caused_by=%s",
            details.name,
            details.retry_num,
            details.wait_for,
            type(details.caused_by).__name__,
        )

    stamina.instrumentation.set_on_retry_hooks([log_retry])


# The Azure SDK's loggers: the HTTP logging policy logs every request and response at INFO, identity logs every
# token it gets. In Application Insights that is noise that costs money.
_SDK_LOGGERS = ("azure", "msal", "urllib3", "opentelemetry")


def quiet_sdk_loggers(level: str) -> None:
    """Set the Azure SDK's (and its transports') loggers to ``level`` (``RENEWAL_SDK_LOG_LEVEL``)."""
    for name in _SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _senders(settings: Settings, clock: Clock) -> dict[str, OutboxSender]:
    """The outbox destinations the settings configure, besides webhooks and the topic."""
    senders: dict[str, OutboxSender] = {}
    if settings.notifiers:
        from renewal.notify import NotifierSender

        senders["notify"] = NotifierSender(settings.notifiers, settings.environ, clock=clock)
    return senders


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class _Adapters:
    """The CA adapters, one per profile: those handed in, and the others built on first use."""

    environ: Mapping[str, str]
    built: dict[str, CAAdapter] = field(default_factory=dict)

    def for_profile(self, profile: CAProfile) -> CAAdapter:
        adapter = self.built.get(profile.name)
        if adapter is None:
            adapter = self.built[profile.name] = adapter_for(profile, self.environ)
        return adapter


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Everything a renewal needs, built once per configuration and reused across invocations.

    Attributes:
        settings: the validated app settings.
        keyvault: one SDK client per vault, reused.
        journal: the renewal records and the outbox.
        webhooks: the deployment webhook sender.
        topic: the outcome topic publisher, if configured.
        clock: the current time, tz-aware UTC; every decision reads this one clock.
        rng: jitter source.
        worker_id: who holds claims taken by this runtime.
        checkpoint: called as the renewal passes each step (see ``Checkpoint``).
        metrics: where measurements go (``NoMetrics`` when no exporter is configured).
        senders: the outbox destinations other than webhooks and the topic, by endpoint kind (``notify``,
            ``target``, ``revoke``; see renewal.shells.senders).
        rollouts: each deployment target's rollout state (docs/targets.md), when targets are configured or a
            CA profile retires superseded certificates; ``None`` otherwise.
    """

    settings: Settings
    keyvault: KeyVaultClients
    journal: RenewalJournal
    webhooks: WebhookSender
    topic: OutcomeTopic | None
    clock: Clock
    rng: random.Random
    worker_id: str
    checkpoint: Checkpoint
    metrics: Metrics = field(default_factory=NoMetrics)
    senders: Mapping[str, OutboxSender] = field(default_factory=dict)
    rollouts: RolloutStore | None = None
    _adapters: _Adapters = field(repr=False, default_factory=lambda: _Adapters({}))

    def adapter(self, profile: CAProfile) -> CAAdapter:
        """The profile's CA adapter: the one handed to ``build_runtime``, or built (once) from its options.

        Raises:
            ConfigurationError: the profile's adapter or options are not usable.
        """
        return self._adapters.for_profile(profile)

    def scrub(self, text: str) -> str:
        """``text`` fit to show: without PEM blocks, control characters, credentials or any configured secret."""
        return scrub(text, self.settings.secret_values)

    def deliverer(self) -> Deliverer:
        """The outbox sender for this runtime."""
        return Deliverer(
            settings=self.settings,
            journal=self.journal,
            webhooks=self.webhooks,
            topic=self.topic,
            clock=lambda: self.clock().timestamp(),
            rng=self.rng,
            checkpoint=self.checkpoint,
            senders=self.senders,
            metrics=self.metrics,
        )


def build_runtime(
    settings: Settings,
    *,
    adapters: Mapping[str, CAAdapter] | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    checkpoint: Checkpoint | None = None,
    journal: RenewalJournal | None = None,
    keyvault: KeyVaultClients | None = None,
    webhooks: WebhookSender | None = None,
    topic: OutcomeTopic | None = None,
    worker_id: str | None = None,
    metrics: Metrics | None = None,
    senders: Mapping[str, OutboxSender] | None = None,
    rollouts: RolloutStore | None = None,
    arm: ArmClient | None = None,
    pacer: Pacer | None = None,
) -> Runtime:
    """Build the runtime the settings describe; each keyword replaces one part (tests inject here).

    ``adapters`` maps a CA profile's name to the adapter to use for it. It also installs the log scrubber for the
    settings' secrets (every log record of the process passes it).

    Raises:
        ConfigurationError: no storage for the journal, or a malformed one.
    """
    clock = clock or system_clock
    injected_journal = journal
    static = settings.keyvault_static_token
    credential = StaticTokenCredential(static) if static else None
    if journal is None:
        journal = Journal(
            table_client_from_environ(settings.environ, settings.journal_table),
            clock=lambda: clock().timestamp(),
            claim_seconds=settings.claim_seconds,
            retention_seconds=settings.outbox_retention_days * 86400,
        )
    if topic is None and settings.outcome_topic_endpoint:
        from renewal.shells.topic import OutcomeTopic

        # The static token is for local emulators: a topic elsewhere gets DefaultAzureCredential (None).
        local_topic = is_loopback_url(settings.outcome_topic_endpoint)
        topic = OutcomeTopic(
            settings.outcome_topic_endpoint,
            key=settings.outcome_topic_key,
            credential=credential if local_topic else None,
            connection_verify=settings.keyvault_ca_bundle,
        )
    if senders is None:
        senders = _senders(settings, clock)
    from renewal.shells.telemetry import metrics_from_environ, telemetry_secrets

    if metrics is None:
        # NoMetrics, importing nothing, unless an exporter is configured (docs/metrics.md).
        metrics = metrics_from_environ(settings.environ)
    SecretScrubber.install(settings.secret_values | telemetry_secrets(settings.environ))
    log_retries_at_debug()
    quiet_sdk_loggers(settings.sdk_log_level)
    if pacer is None and keyvault is None and settings.pacing.enabled:
        pacer = _pacer(settings, clock, in_memory=injected_journal is not None)
    if rollouts is None and rolls_out(settings):
        rollouts = _rollout_store(settings, injected_journal, journal)
    runtime = Runtime(
        settings=settings,
        keyvault=keyvault
        or KeyVaultClients(
            credential=credential,
            connection_verify=settings.keyvault_ca_bundle,
            timeout_seconds=settings.keyvault_timeout_seconds,
            pacer=pacer,
            pacing_wait_seconds=settings.pacing.max_wait_seconds,
        ),
        journal=journal,
        webhooks=webhooks or WebhookSender(),
        topic=topic,
        clock=clock,
        rng=rng or random.Random(),
        worker_id=worker_id or _worker_id(),
        checkpoint=checkpoint or _no_checkpoint,
        metrics=metrics or NoMetrics(),
        senders=dict(senders or {}),
        rollouts=rollouts,
        _adapters=_Adapters(settings.environ, dict(adapters or {})),
    )
    if rollouts is not None:
        from renewal.flow.rollout import with_rollout_senders

        runtime = with_rollout_senders(runtime, rollouts, arm=arm)
    return runtime


def _pacer(settings: Settings, clock: Clock, *, in_memory: bool) -> Pacer:
    """The per-vault create pacing, shared by every instance: one row per vault in the journal's table (its
    ``PartitionKey`` is the vault's host, which no journal row uses, and the role ``infra/`` grants the app on that
    table covers it); in memory beside a journal handed in (tests, one process)."""
    from renewal.shells.pacing import InMemoryPacer, TablePacer

    seconds = lambda: clock().timestamp()  # noqa: E731 - the pacers take Unix seconds
    if in_memory:
        return InMemoryPacer(clock=seconds, options=settings.pacing)
    table = table_client_from_environ(settings.environ, settings.journal_table)
    return TablePacer(table, clock=seconds, options=settings.pacing)


def rolls_out(settings: Settings) -> bool:
    """Whether anything follows a merge beyond notifications: deployment targets, or a CA profile that retires
    the superseded certificate. Without either, no rollout code is imported and no rollout row is read."""
    if settings.environ.get("RENEWAL_TARGETS", "").strip() not in ("", "{}"):
        return True
    return any(str(p.options.get("revoke_superseded", "")).lower() == "true" for p in settings.ca_profiles.values())


def _rollout_store(settings: Settings, injected: RenewalJournal | None, journal: RenewalJournal) -> RolloutStore:
    if injected is not None:
        from renewal.shells.rollouts import InMemoryRollouts

        # A journal handed in (tests, the CLI) gets its rollout rows beside it, in memory.
        return InMemoryRollouts(journal)
    from renewal.shells.rollouts import TableRollouts

    return TableRollouts(table_client_from_environ(settings.environ, settings.journal_table))
