"""The rollout of a merged version: push it to each deployment target through the outbox, then verify, sweep by
sweep, what each one serves (docs/targets.md).

1. ``queue_rollout``, with the merge (in the same journal write as the webhooks), queues one ``target:<name>`` row
   per target whose tag selector matches the certificate; for a certificate without targets whose CA profile
   retires superseded certificates, it queues the retirement, due after the profile's grace period.
2. ``TargetSender`` pushes: the outbox retries a failed push with backoff and dead-letters it past the maximum
   age, like a webhook. A push that succeeded writes the target's rollout row, ``pushed``, with its deadline.
3. ``check_rollouts``, a sweep phase, probes each pushed target's endpoint once per sweep (never waiting within an
   invocation): ``serving`` when it presents the new version's thumbprint, ``stalled`` past the deadline. It
   announces ``rollout_stalled`` (naming the targets that serve something else) and ``rollout_complete`` once
   each per version, and, when every target was seen serving the new version and the profile opted in, queues
   the retirement (``renewal.flow.retire``).

A target without a probe cannot be verified: it becomes ``unverified`` once its documented pick-up time passed,
which completes the rollout but never confirms it, so a certificate with such a target is not retired.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from renewal.errors import PermanentError, RenewalError, RetryableError
from renewal.flow.deliveries import queue_for
from renewal.flow.retire import queue_retirement, retires
from renewal.outcome import Delivery, Outcome, Reason, log_outcome
from renewal.pure.plan import profile_for
from renewal.pure.redact import scrub
from renewal.pure.rollout import (
    ANNOUNCE_COMPLETE,
    ANNOUNCE_RETIRE,
    ANNOUNCE_STALLED,
    Progress,
    Rollout,
    announcements_due,
    observed,
    progress_of,
    pushed,
    unprobed,
)
from renewal.shells.journal import OutboxItem
from renewal.shells.probe import probe

if TYPE_CHECKING:
    from renewal.flow.runtime import Clock, Runtime
    from renewal.settings import Settings
    from renewal.shells.arm import ArmClient
    from renewal.shells.rollouts import RolloutStore
    from renewal.shells.senders import OutboxSender
    from renewal.targets import DeploymentTarget, ProbeEndpoint, TargetConfig

__all__ = [
    "PROBE_TIMEOUT",
    "TARGET_KIND",
    "RolloutReport",
    "TargetSender",
    "check_rollouts",
    "queue_rollout",
    "rollout_store",
    "with_rollout_senders",
]

logger = logging.getLogger("renewal")

TARGET_KIND = "target"
# One handshake; a service that does not answer within this is unreachable for this sweep, not stalled.
PROBE_TIMEOUT = 5.0
_NAMESPACE = uuid.UUID("3c1b9f0a-7d2e-4f5b-8a61-9e4d2c7b5a30")

Prober = Callable[["ProbeEndpoint"], str]


def _configs(settings: Settings) -> tuple[TargetConfig, ...]:
    from renewal.targets import parse_targets

    return tuple(parse_targets(settings.environ))


def queue_rollout(
    runtime: Runtime,
    *,
    vault_name: str,
    vault_url: str,
    certificate_name: str,
    new_version: str,
    thumbprint: str,
    previous_version: str | None,
    tags: Mapping[str, str],
    now: datetime,
    ca_profile: str | None = None,
    key_curve: str | None = None,
    configs: Sequence[TargetConfig] | None = None,
) -> list[OutboxItem]:
    """The outbox rows that roll a merged version out: one ``target:<name>`` row per target that applies, or, with
    none and a CA profile that retires superseded certificates, the retirement due after its grace period.

    Ids are derived from (vault, certificate, version, target), so queuing twice gives the same rows. The payload
    holds what the push needs (names, ids and the thumbprint; no secrets). ``ca_profile`` defaults to the one the
    tags choose; ``configs`` to ``RENEWAL_TARGETS``.

    Raises:
        ConfigurationError: ``RENEWAL_TARGETS`` is malformed (a profile whose retirement options are unusable is
            logged, and its retirement not queued).
    """
    from renewal.targets import targets_for

    applicable = list(targets_for(_configs(runtime.settings) if configs is None else configs, tags))
    if ca_profile is None:
        try:
            chosen = profile_for(tags, runtime.settings.ca_profiles, runtime.settings.default_ca_profile)
        except PermanentError:
            chosen = None
        ca_profile = chosen.name if chosen else None
    names = [config.name for config in applicable]
    base = {
        "vault_name": vault_name,
        "vault_url": vault_url,
        "certificate_name": certificate_name,
        "version": new_version,
        "thumbprint": thumbprint.lower(),
        "key_curve": key_curve,
        "previous_version": previous_version,
        "ca_profile": ca_profile,
        "targets": names,
        "tags": dict(tags),
    }
    moment = now.timestamp()
    items = [
        OutboxItem(
            vault_name=vault_name,
            webhook_id="msg_"
            + uuid.uuid5(_NAMESPACE, f"{vault_name}/{certificate_name}/{new_version}/{name}".lower()).hex,
            endpoint=f"{TARGET_KIND}:{name}",
            certificate_name=certificate_name,
            version=new_version,
            payload=json.dumps({**base, "target": name}, separators=(",", ":"), sort_keys=True),
            created_at=moment,
            next_attempt_at=moment,
        )
        for name in names
    ]
    if not items and previous_version and ca_profile:
        try:
            opted_in, grace_hours = retires(runtime, ca_profile)
        except RenewalError as exc:
            # The version is merged already: a profile that cannot retire must not fail its deployment.
            logger.error("retirement not queued ca_profile=%s error=%s", ca_profile, runtime.scrub(exc.message))
            opted_in, grace_hours = False, 0.0
        if opted_in:
            items.append(
                queue_retirement(
                    vault_name=vault_name,
                    vault_url=vault_url,
                    certificate_name=certificate_name,
                    new_version=new_version,
                    previous_version=previous_version,
                    ca_profile=ca_profile,
                    targets=(),
                    due=now + timedelta(hours=grace_hours),
                )
            )
    return items


class TargetSender:
    """The ``OutboxSender`` for ``target:`` rows: push the version to the target, and record the rollout row.

    Args:
        settings: the app settings (``RENEWAL_TARGETS``, and the environment the ARM client is built from).
        rollouts: where the rollout rows go.
        clock: the current time, tz-aware UTC.
        build: makes the target for a configuration; by default ``renewal.targets.build_target`` with one ARM
            client from the environment (built on first use).
        configs: the targets; by default read from ``RENEWAL_TARGETS`` on first use.
        arm: the ARM client the default ``build`` uses; by default one from the environment.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        rollouts: RolloutStore,
        clock: Clock,
        build: Callable[[TargetConfig], DeploymentTarget] | None = None,
        configs: Sequence[TargetConfig] | None = None,
        arm: ArmClient | None = None,
    ) -> None:
        self._settings = settings
        self._rollouts = rollouts
        self._clock = clock
        self._build = build
        self._configs = tuple(configs) if configs is not None else None
        self._arm = arm

    def send(self, item: OutboxItem) -> Delivery:
        """Push once; never raises for a target that fails (a ``Delivery`` says whether retrying can help)."""
        try:
            payload: Mapping[str, Any] = json.loads(item.payload)
            config = self._config(str(payload["target"]))
            target = self._target(config)
            new_version = _new_version(payload)
            result = target.push(new_version)
            self._record(payload, config, target.pickup_deadline)
        except RetryableError as exc:
            return self._failed(item, exc, permanent=False)
        except RenewalError as exc:
            return self._failed(item, exc, permanent=True)
        except (ValueError, KeyError, TypeError) as exc:
            return self._failed(item, PermanentError(f"the stored push is malformed ({type(exc).__name__})"), True)
        logger.info(
            "target pushed target=%s kind=%s result=%s vault=%s certificate=%s version=%s",
            target.name,
            target.kind,
            result,
            item.vault_name,
            item.certificate_name,
            item.version,
        )
        return Delivery(item.endpoint, item.webhook_id, True, 1, None, None)

    def _config(self, name: str) -> TargetConfig:
        if self._configs is None:
            self._configs = _configs(self._settings)
        config = next((c for c in self._configs if c.name == name), None)
        if config is None:
            raise PermanentError(f"target {name!r} is no longer configured", reason="bad_configuration")
        return config

    def _target(self, config: TargetConfig) -> DeploymentTarget:
        if self._build is None:
            from renewal.targets import arm_client_from_environ, build_target

            arm = self._arm or arm_client_from_environ(self._settings.environ)
            self._build = lambda config: build_target(config, arm)
        return self._build(config)

    def _record(self, payload: Mapping[str, Any], config: TargetConfig, pickup_deadline: timedelta) -> None:
        """Write the ``pushed`` row, unless this version's row is there already (a redelivered push)."""
        endpoint = config.probe
        row = pushed(
            vault_name=str(payload["vault_name"]),
            vault_url=str(payload["vault_url"]),
            certificate_name=str(payload["certificate_name"]),
            target=config.name,
            kind=config.kind,
            version=str(payload["version"]),
            thumbprint=str(payload["thumbprint"]),
            previous_version=payload.get("previous_version") or None,
            ca_profile=payload.get("ca_profile") or None,
            targets=tuple(payload.get("targets") or (config.name,)),
            tags=payload.get("tags") or {},
            now=self._clock(),
            pickup_deadline=pickup_deadline,
            probe=(endpoint.host, endpoint.port, endpoint.sni) if endpoint else None,
        )
        for _ in range(3):
            stored = self._rollouts.get(row.vault_name, row.certificate_name, row.target)
            if stored is not None and stored.version == row.version:
                return
            if stored is not None and stored.pushed_at > row.pushed_at:
                return
            if self._rollouts.save(replace(row, etag=stored.etag if stored else None)) is not None:
                return
        raise RetryableError("the rollout row kept changing while it was written", reason="journal_unavailable")

    def _failed(self, item: OutboxItem, exc: RenewalError, permanent: bool) -> Delivery:
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        message = scrub(f"{exc.message} ({exc.reason})", self._settings.secret_values)
        return Delivery(item.endpoint, item.webhook_id, False, 1, None, message, permanent, retry_after)


def _new_version(payload: Mapping[str, Any]) -> Any:
    from renewal.targets import NewVersion

    return NewVersion(
        vault_name=str(payload["vault_name"]),
        vault_url=str(payload["vault_url"]),
        certificate_name=str(payload["certificate_name"]),
        version=str(payload["version"]),
        thumbprint=str(payload["thumbprint"]),
        key_curve=payload.get("key_curve") or None,
    )


@dataclass(slots=True)
class RolloutReport:
    """What one pass over the rollouts did.

    Attributes:
        probed: endpoints probed.
        serving: targets newly seen serving their new version.
        stalled: targets newly past their deadline without it.
        announced: ``vault/certificate/version: announcement`` for each announcement queued.
        retirements: retirements queued.
        unfinished: whether the budget ran out before every rollout was looked at.
    """

    probed: int = 0
    serving: int = 0
    stalled: int = 0
    announced: list[str] = field(default_factory=list)
    retirements: int = 0
    unfinished: bool = False


def check_rollouts(
    runtime: Runtime,
    vault_names: Iterable[str],
    *,
    spent: Callable[[], bool],
    rollouts: RolloutStore | None = None,
    prober: Prober | None = None,
) -> RolloutReport:
    """Probe each rollout still waiting, once, and announce what changed (a sweep phase; stops when ``spent``).

    Only each certificate's latest pushed version is followed; older rows were replaced by the new push or belong
    to targets that left the configuration. A probe that fails counts as "not serving yet". ``prober`` defaults to
    ``renewal.shells.probe.probe`` with ``PROBE_TIMEOUT``.

    Raises:
        RetryableError: storage is unavailable.
    """
    store = rollouts if rollouts is not None else rollout_store(runtime)
    look = prober or (lambda endpoint: probe(endpoint, timeout=PROBE_TIMEOUT))
    report = RolloutReport()
    by_certificate: dict[tuple[str, str], list[Rollout]] = defaultdict(list)
    for row in store.unsettled(list(vault_names)):
        by_certificate[(row.vault_name.lower(), row.certificate_name.lower())].append(row)
    for rows in by_certificate.values():
        if spent():
            report.unfinished = True
            break
        latest = max(rows, key=lambda row: row.pushed_at).version
        _follow(runtime, store, [row for row in rows if row.version == latest], look, report)
    return report


def _follow(runtime: Runtime, store: RolloutStore, rows: list[Rollout], look: Prober, report: RolloutReport) -> None:
    """Probe one version's waiting targets, save what changed, and make its announcements."""
    from renewal.targets import ProbeEndpoint

    now = runtime.clock()
    current: list[Rollout] = []
    for row in rows:
        if row.needs_probe:
            assert row.probe_host is not None
            report.probed += 1
            try:
                seen, error = look(ProbeEndpoint(row.probe_host, row.probe_port, row.probe_sni)), None
            except RenewalError as exc:
                seen, error = None, runtime.scrub(exc.message)
            after = observed(row, seen=seen, error=error, now=now)
        else:
            after = unprobed(row, now=now)
        if after != row:
            saved = store.save(after)
            if saved is None:
                return  # another sweep is at this version: it makes the announcements
            after = saved
            report.serving += after.state == "serving" and row.state != "serving"
            report.stalled += after.state == "stalled" and row.state != "stalled"
        current.append(after)
    progress = progress_of(current)
    profile = current[0].ca_profile
    try:
        opted_in = retires(runtime, profile)[0] if current[0].previous_version else False
    except RenewalError as exc:
        logger.error("retirement options unusable ca_profile=%s error=%s", profile, exc.message)
        opted_in = False
    due = announcements_due(progress, retire=opted_in)
    if due:
        outbox = [item for announcement in due for item in _announcement(runtime, current, progress, announcement)]
        first = current[0]
        marked = store.save(replace(first, announced=(*first.announced, *due)), outbox=outbox)
        if marked is None:
            return
        current[0] = marked
        version = f"{first.vault_name}/{first.certificate_name}/{first.version}"
        report.announced.extend(f"{version}: {announcement}" for announcement in due)
        report.retirements += ANNOUNCE_RETIRE in due
    if progress.complete:
        # Complete and announced (the retirement too, when it was due): nothing can change for this version any
        # more, so later sweeps need not read it. A new push writes a fresh, unsettled row.
        for row in current:
            store.save(replace(row, settled=True))


def _announcement(runtime: Runtime, rows: list[Rollout], progress: Progress, announcement: str) -> list[OutboxItem]:
    first, now = rows[0], runtime.clock()
    if announcement == ANNOUNCE_RETIRE:
        assert first.previous_version is not None
        assert first.ca_profile is not None
        return [
            queue_retirement(
                vault_name=first.vault_name,
                vault_url=first.vault_url,
                certificate_name=first.certificate_name,
                new_version=first.version,
                previous_version=first.previous_version,
                ca_profile=first.ca_profile,
                targets=tuple(dict.fromkeys(name for row in rows for name in row.targets)),
                due=now,
            )
        ]
    if announcement == ANNOUNCE_COMPLETE:
        parts = [f"seen serving: {', '.join(progress.serving)}"] if progress.serving else []
        if progress.unverified:
            parts.append(f"no probe, past their pick-up time: {', '.join(progress.unverified)}")
        outcome = Outcome(
            status="renewed",
            reason=Reason.ROLLOUT_COMPLETE,
            message=f"every target serves version {first.version} ({'; '.join(parts)})",
            vault_name=first.vault_name,
            certificate_name=first.certificate_name,
            ca_profile=first.ca_profile,
            previous_version=first.previous_version,
            new_version=first.version,
        )
    else:
        by_target = {row.target: row for row in rows}
        still = [
            f"{name} (serves {by_target[name].seen_thumbprint or 'nothing reachable'})" for name in progress.stalled
        ]
        assert announcement == ANNOUNCE_STALLED
        outcome = Outcome(
            status="failed",
            reason=Reason.ROLLOUT_STALLED,
            message=f"version {first.version} (thumbprint {first.thumbprint}) is not served past the pick-up "
            f"deadline by: {', '.join(still)}",
            vault_name=first.vault_name,
            certificate_name=first.certificate_name,
            ca_profile=first.ca_profile,
            previous_version=first.previous_version,
            new_version=first.version,
            retryable=True,
        )
    log_outcome(outcome)
    return queue_for(
        runtime.settings,
        outcome,
        verified=None,
        vault_url=first.vault_url,
        tags=first.tags,
        now=now,
        occurrence=announcement,
    )


def rollout_store(runtime: Runtime) -> RolloutStore:
    """The rollout rows of this runtime: its ``rollouts`` if it has them, else the journal's table.

    Raises:
        ConfigurationError: no storage for the journal.
    """
    own: RolloutStore | None = getattr(runtime, "rollouts", None)
    if own is not None:
        return own
    from renewal.shells.journal import table_client_from_environ
    from renewal.shells.rollouts import TableRollouts

    return TableRollouts(table_client_from_environ(runtime.settings.environ, runtime.settings.journal_table))


def with_rollout_senders(
    runtime: Runtime, rollouts: RolloutStore | None = None, *, arm: ArmClient | None = None
) -> Runtime:
    """``runtime`` with the ``target`` and ``revoke`` outbox senders added; senders it has already (injected) win.

    Raises:
        ConfigurationError: no storage for the journal.
    """
    from renewal.flow.retire import REVOKE_KIND, RevokeSender

    store = rollouts if rollouts is not None else rollout_store(runtime)
    senders: dict[str, OutboxSender] = {
        TARGET_KIND: TargetSender(settings=runtime.settings, rollouts=store, clock=runtime.clock, arm=arm),
        REVOKE_KIND: RevokeSender(runtime, store),
        **runtime.senders,
    }
    return replace(runtime, senders=senders)
