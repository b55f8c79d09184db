"""E-mail over SMTP submission (RFC 6409), with STARTTLS (RFC 3207) and AUTH PLAIN or LOGIN (RFC 4954).

Nothing is said in clear beyond EHLO: when the notifier asks for STARTTLS and the server does not offer it, no
mail is sent (a man in the middle strips the offer to read what follows), and AUTH is only ever sent over TLS.
The server's certificate is verified against the system store, or the notifier's ``tls_ca_bundle``, and must be
issued for its host name. Reply codes decide what happens next: 535 (authentication failed) and other 5xx are
permanent, 4xx are transient (RFC 5321 §4.2.1: "the command may be requested again"), as are connection failures
and timeouts. The server's own text is never repeated: it may echo what it was sent.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from renewal.errors import PermanentError, RenewalError, RetryableError
from renewal.notify._config import EmailOptions
from renewal.notify._protocol import Notice

__all__ = ["EmailChannel"]

logger = logging.getLogger(__name__)


class EmailChannel:
    """Mails notices to one notifier's recipients.

    Args:
        options: the server, the addresses and the TLS settings.
        password: the AUTH password (from the notifier's ``password_setting``), or ``None`` without AUTH.
        clock: now, tz-aware (the ``Date`` header).
        timeout: seconds for the connection and each reply.
        local_hostname: the name sent with EHLO (``smtplib`` would otherwise resolve this machine's FQDN, which
            can stall for seconds without DNS).
    """

    def __init__(
        self,
        options: EmailOptions,
        *,
        password: str | None,
        clock: Callable[[], datetime],
        timeout: float = 30.0,
        local_hostname: str = "localhost",
    ) -> None:
        self._options = options
        self._password = password
        self._clock = clock
        self._timeout = timeout
        self._local_hostname = local_hostname

    def render(self, notice: Notice) -> EmailMessage:
        """The mail: a subject naming the news, the certificate and its status; a plain-text body."""
        options = self._options
        message = EmailMessage()
        message["Subject"] = f"{notice.title} [{notice.status}: {notice.reason}]"
        message["From"] = options.sender
        message["To"] = ", ".join(options.recipients)
        message["Date"] = format_datetime(self._clock())
        # The outbox row's id: a redelivery after a lost answer carries the same Message-ID, so mail clients
        # and archives can tell it is the same message.
        message["Message-ID"] = f"<{notice.webhook_id}@{options.sender.partition('@')[2]}>"
        # RFC 3834: no vacation replies or bounces to auto-responders.
        message["Auto-Submitted"] = "auto-generated"
        lines = [notice.title, ""]
        if notice.message:
            lines += [notice.message, ""]
        width = max(len(label) for label, _ in notice.facts())
        lines += [f"{label + ':':<{width + 1}} {value}" for label, value in notice.facts()]
        if notice.certificate_id:
            lines += ["", f"Key Vault: {notice.certificate_id}"]
        lines += ["", f"-- Key Vault certificate renewal, notifier {notice.notifier}, queued {notice.queued_at}"]
        message.set_content("\n".join(lines) + "\n")
        return message

    def send(self, notice: Notice) -> int:
        """Submit the mail once; 250 when the server took it.

        Raises:
            PermanentError: reason ``notify_auth_failed`` (the login was refused), ``notify_tls_untrusted``
                (the server's certificate does not verify), ``notify_refused`` (STARTTLS or AUTH not offered, a
                5xx reply, every recipient refused).
            RetryableError: reason ``notify_unavailable``: a 4xx reply, a connection refused, cut or timed out.
        """
        options = self._options
        message = self.render(notice)
        where = f"the mail server at {options.host}:{options.port}"
        try:
            with smtplib.SMTP(
                options.host, options.port, timeout=self._timeout, local_hostname=self._local_hostname
            ) as smtp:
                smtp.ehlo()
                if options.starttls:
                    if not smtp.has_extn("starttls"):
                        raise PermanentError(
                            f"{where} does not offer STARTTLS, which the notifier requires; nothing was sent",
                            reason="notify_refused",
                        )
                    smtp.starttls(context=ssl.create_default_context(cafile=options.tls_ca_bundle))
                    smtp.ehlo()
                if options.username is not None:
                    self._login(smtp, where)
                refused = smtp.send_message(message)
        except (PermanentError, RetryableError):
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(
                f"{where} refused the login ({exc.smtp_code}); check the username and the password setting",
                reason="notify_auth_failed",
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise _by_code(where, "refused every recipient", codes) from exc
        except smtplib.SMTPResponseException as exc:
            raise _by_code(where, "answered", [exc.smtp_code]) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{where} does not support what the notifier needs", reason="notify_refused") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(
                f"the TLS certificate of {where} is not trusted or not issued for that host name (check the "
                "host, and tls_ca_bundle for a private CA); nothing was sent",
                reason="notify_tls_untrusted",
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Connection refused, reset or timed out, a TLS handshake cut short, the server hanging up.
            raise RetryableError(f"cannot reach {where}: {type(exc).__name__}", reason="notify_unavailable") from exc
        if refused:
            logger.warning(
                "mail server refused %d of %d recipients notifier=%s webhook_id=%s",
                len(refused),
                len(options.recipients),
                notice.notifier,
                notice.webhook_id,
            )
        return 250

    def _login(self, smtp: smtplib.SMTP, where: str) -> None:
        if not isinstance(smtp.sock, ssl.SSLSocket):
            raise PermanentError(f"refusing to send AUTH to {where} without TLS", reason="notify_refused")
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            raise PermanentError(f"{where} offers neither AUTH PLAIN nor AUTH LOGIN", reason="notify_refused")
        smtp.user, smtp.password = self._options.username or "", self._password or ""
        authobject = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        smtp.auth(mechanism, authobject, initial_response_ok=True)


def _by_code(where: str, what: str, codes: list[int]) -> RenewalError:
    shown = ", ".join(str(code) for code in codes)
    if codes and all(400 <= code < 500 for code in codes):
        return RetryableError(f"{where} {what} ({shown}); trying again later", reason="notify_unavailable")
    return PermanentError(f"{where} {what} ({shown})", reason="notify_refused")
