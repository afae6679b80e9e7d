"""Outgoing mail through an outbox: nothing is lost when the SMTP server is down.

A message is written to the `outbox` table in the same transaction as what it
announces, then sent at once if the server answers; if not, the mail cron job
(`monitor/send_mail`) retries it with growing delays, until it is taken.
A named lock keeps two senders (a request and cron) from sending one twice.

A message goes to one address, named to the SMTP server as the envelope's only recipient: a header
that a mail library reads as a list (`a,b@example.com`) never makes a second one.
"""

import re
import sys

from .errors import DomainError

LOCK_NAME = "cloudprovisioner.mail"
# Seconds the sender holds its lease: 100 messages, each within the SMTP timeout, with room to spare. A sender
# that dies keeps the next one waiting this long at most (its messages stay due and go then).
SEND_LEASE = 600
MAX_DELAY = 3600  # seconds between retries, at most
# One addr-spec in RFC 5322's dot-atom form, ASCII: no display name, no quoted local part, no domain
# literal, nothing that is a separator in a list of addresses (`,` `;`), brackets, spaces or controls.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_PATTERN = rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+"
ADDRESS_HINT = "must be one email address (name@example.com), without a display name"
MAX_ADDRESS_LENGTH = 254
_ADDRESS = re.compile(ADDRESS_PATTERN)
NEVER = "9999-12-31 00:00:00"  # next_attempt_at of a message that will not be sent


def is_one_address(text):
    return isinstance(text, str) and len(text) <= MAX_ADDRESS_LENGTH and _ADDRESS.fullmatch(text) is not None


def enqueue(db, recipient, subject, body):
    if not is_one_address(recipient):
        raise ValueError(f"mail is sent to one checked address, not {recipient!r}")
    db.update("INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at) "
              "VALUES (%s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))", (recipient, subject, body))


def deliver(config, db, log=None):
    """Send every message that is due. Answer (sent, failed); quietly nothing if another sender runs."""
    from . import leases
    lease = leases.take(db, LOCK_NAME, SEND_LEASE)
    if lease is None:
        return 0, 0
    try:
        due = db.query("SELECT id, recipient, subject, body, attempts FROM outbox "
                       "WHERE sent_at IS NULL AND next_attempt_at <= UTC_TIMESTAMP(6) ORDER BY id LIMIT 100")
        if not due:
            return 0, 0
        return _send_all(config, db, due, log or (lambda message: None))
    finally:
        lease.release()


def _send_all(config, db, due, log):
    import smtplib
    sent = failed = 0
    try:
        connection = _connect(config)
    except (OSError, smtplib.SMTPException) as exc:
        for message in due:
            _postpone(db, message, exc)
        log(f"mail: cannot reach {config.smtp_host}:{config.smtp_port}: {exc}")
        return 0, len(due)
    with connection:
        for message in due:
            if not is_one_address(message["recipient"]):
                _give_up(db, message, "the recipient is not one email address")
                failed += 1
                log(f"mail: message {message['id']} to {message['recipient']!r} not sent: not one address")
                continue
            try:
                connection.send_message(_email(config, message), to_addrs=[message["recipient"]])
            except (OSError, smtplib.SMTPException) as exc:
                _postpone(db, message, exc)
                failed += 1
                log(f"mail: message {message['id']} to {message['recipient']} not sent: {exc}")
                continue
            db.update("UPDATE outbox SET sent_at = UTC_TIMESTAMP(6), attempts = attempts + 1 WHERE id = %s",
                      (message["id"],))
            sent += 1
    return sent, failed


def _connect(config):
    import smtplib
    security = config.smtp_security
    if security == "ssl":
        connection = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout)
    else:
        connection = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout)
        if security == "starttls":
            connection.starttls()
    if config.smtp_user:
        connection.login(config.smtp_user, config.smtp_password)
    return connection


def _email(config, message):
    from email.message import EmailMessage
    email = EmailMessage()
    email["From"] = config.mail_from
    email["To"] = message["recipient"]
    email["Subject"] = message["subject"]
    email.set_content(message["body"])
    return email


def _postpone(db, message, error):
    delay = min(MAX_DELAY, 60 * 2 ** message["attempts"])
    db.update("UPDATE outbox SET attempts = attempts + 1, last_error = %s, "
              "next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND WHERE id = %s",
              (str(error)[:500], delay, message["id"]))


def _give_up(db, message, reason):
    db.update("UPDATE outbox SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s WHERE id = %s",
              (reason, NEVER, message["id"]))


def main(argv=None):
    """The mail cron job: send what is due; say something only when mail moved or failed."""
    from . import config as configuration
    from .db import Database
    config = configuration.load_for_command("send_mail", "Send the mail waiting in the outbox.", argv)
    try:
        db = Database(config)
        try:
            sent, failed = deliver(config, db, log=lambda line: sys.stderr.write(line + "\n"))
        finally:
            db.close()
    except (configuration.ConfigError, DomainError) as exc:
        sys.stderr.write(f"send_mail: {exc}\n")
        return 1
    if sent:
        print(f"mail: {sent} sent")
    return 1 if failed else 0
