"""The core API without a framework: a manual server span, service/method children,
an event span and a failing call — configured from $INFRATRACE_CONFIG."""

from __future__ import annotations

import hashlib

import infratrace


@infratrace.method("user.hash")
def hash_password(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@infratrace.service("user.login")
def login(name: str, password: str) -> bool:
    digest = hash_password(password)
    ok = digest.startswith("0") or name == "alice"
    if ok:
        infratrace.trace("user.login.validated", {"user": name})
    else:
        infratrace.trace("user.login.failed", {"status": "error", "error": "invalid password", "user": name})
    return ok


@infratrace.method("user.lookup")
def lookup(user_id: int) -> dict[str, int]:
    if user_id < 0:
        raise KeyError(user_id)
    return {"id": user_id}


def main() -> None:
    infratrace.configure()  # $INFRATRACE_CONFIG
    attrs = infratrace.trace_attrs("user", "server", "login", {"module": "cli", "operation": "serve"})
    with infratrace.begin("service:cli.session", attrs):
        login("alice", "secret")
        login("bob", "hunter2")
        try:
            lookup(-1)
        except KeyError:
            pass
    infratrace.shutdown()


if __name__ == "__main__":
    main()
