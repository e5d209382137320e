"""The one way a storage URL is shown: without its password (issue 22).

Every message, log line and stored value that names an Optuna storage (`tune --storage`,
`run --use-tuned URL`) goes through `redact`, and a message that quotes what a database
driver said goes through `scrub`. The URL is parsed as Optuna's storage reads it
(SQLAlchemy's `make_url`, which also percent-decodes), so what is hidden is exactly the
password the database gets, whatever characters it holds; a URL that does not parse is
hidden entirely after its scheme. Query arguments that carry secrets (`?password=`) are
hidden too. A file path or `journal:PATH` carries no credentials and is shown as given
(unless it holds an @: then it may be a mistyped URL, and what precedes the @ is hidden).
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

HIDDEN = "***"
# Query arguments hidden like the password (libpq reads `?password=`, `?sslpassword=`).
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token")


def redact(url: str) -> str:
    """`url` with its password (and secret query arguments) replaced by ***."""
    text = str(url)
    if "://" not in text:  # a path, journal:PATH, or a URL typed without its // (user:pw@host)
        return text if "@" not in text else f"{HIDDEN}@{text.rpartition('@')[2]}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError, TypeError):
        return f"{text.split('://', 1)[0]}://{HIDDEN}"  # unparsable: nothing after the scheme is safe
    changes: dict = {}
    if "@" in (parsed.host or ""):  # an unencoded @ in the password: its rest was read as the host
        changes = {"host": parsed.host.rpartition("@")[2], "password": HIDDEN}
    secret_args = {key: HIDDEN for key in parsed.query if _is_secret_key(key)}
    if parsed.password is None and not changes and not secret_args:
        return text
    parsed = parsed.set(**changes) if changes else parsed
    if secret_args:
        parsed = parsed.update_query_dict(secret_args)
    return parsed.render_as_string(hide_password=True)


def scrub(text: str, url: str) -> str:
    """`text` (an error message that may quote `url` or its password) with the URL redacted
    and every spelling of its secrets replaced by ***."""
    text = str(text).replace(str(url), redact(url))
    for secret in sorted(_secrets(str(url)), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def _is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_QUERY_KEYS)


def _secrets(url: str) -> set[str]:
    """The password as parsed, percent-encoded and as typed, and secret query values."""
    if "://" not in url:
        return set()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # As typed: the text between the user name's ':' and the first '@' (SQLAlchemy's split).
    userinfo, at, _ = url.split("://", 1)[1].partition("@")
    typed = {userinfo.partition(":")[2]} if at else set()
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return {s for s in typed if s}
    found = typed if parsed.password is not None else set()
    values = [parsed.password] if parsed.password is not None else []
    if "@" in (parsed.host or ""):  # an unencoded @: the password meant runs to the host's last @
        rest = parsed.host.rpartition("@")[0]
        values = [rest, f"{parsed.password or ''}@{rest}"]
    for key, value in parsed.query.items():
        if _is_secret_key(key):
            values += [value] if isinstance(value, str) else list(value)
    for value in values:
        found |= {value, quote(value, safe=""), quote(value), quote_plus(value)}
    return {s for s in found if s}
