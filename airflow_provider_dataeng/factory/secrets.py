"""Find keys (and URI values) that look like credentials anywhere in a config: configs hold connection ids."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from airflow_provider_dataeng.factory.errors import PathT

_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "apikey", "credential",
    "credentials", "privatekey", "accesskey", "secretkey", "bearer",
})
_SECRET_COMPOUNDS = ("api_key", "apikey", "private_key", "access_key", "secret_key", "client_secret", "auth_token")
_SPLIT = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")
_URI_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.\-]*://[^/\s:@{}]+:[^/\s@{}]+@", re.IGNORECASE)


@lru_cache(maxsize=4096)
def looks_secret(key: str) -> bool:
    """``db_password``, ``apiKey``, ``client-secret``, ``token`` -> True; ``conn_id``, ``keep_previous`` -> False."""
    lowered = key.lower()
    if any(c in lowered.replace("-", "_") for c in _SECRET_COMPOUNDS):
        return True
    return any(part.lower() in _SECRET_WORDS for part in _SPLIT.split(key) if part)


def find_secrets(data: Any, path: PathT = ()) -> Iterator[tuple[PathT, str]]:
    """``(path, key)`` for every credential-looking key, and every URI value with an embedded password."""
    if isinstance(data, dict):
        for key, value in data.items():
            sub = path + (key,)
            if isinstance(key, str) and looks_secret(key):
                yield sub, key
            else:
                yield from find_secrets(value, sub)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from find_secrets(item, path + (i,))
    elif isinstance(data, str) and _URI_WITH_PASSWORD.match(data):
        yield path, "a URI with user:password@"
