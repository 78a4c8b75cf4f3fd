"""Every change the acceptance suite makes to the installed units, each with its
reason. Only what the docs (docs/howto/systemd.md, docs/howto/dashboard.md) tell operators to write is allowed (and a shorter
watchdog where a test needs one to fire); test_dropin_rules.py fails if one of
them ever touches the hardening that users run with.

systemd reads an operator's drop-ins from /etc/systemd/system/UNIT.d/; the
throwaway systemd reads units only from its own directory, so the suite writes
the same text there (the one thing the test machine can't provide as is)."""

# Settings a drop-in of this suite must never set: they are what the hardening is.
FORBIDDEN = ("User", "Group", "DynamicUser", "PrivateUsers", "ProtectProc", "ProcSubset", "ProtectSystem",
             "ProtectHome", "PrivateTmp", "PrivateDevices", "ReadWritePaths", "ReadOnlyPaths",
             "InaccessiblePaths", "ExecStart", "ExecReload", "NoNewPrivileges", "CapabilityBoundingSet",
             "SystemCallFilter", "RestrictAddressFamilies", "MemoryDenyWriteExecute", "UMask")

CREDENTIALS = "/etc/mpqueue/credentials/orders"

DROPINS = {
    "mpqueue@orders.service.d/credentials.conf": (
        f"[Service]\nLoadCredential=redis-password:{CREDENTIALS}/redis-password\n",
        "docs/howto/systemd.md, Secrets: the Redis password as a credential"),
    "mpqueue@orders.service.d/logs.conf": (
        "[Service]\nLogsDirectory=mpqueue/orders\n",
        "docs/howto/systemd.md, A log file besides the journal"),
    "mpqueue-web@orders.service.d/credentials.conf": (
        f"[Service]\nLoadCredential=web-token:{CREDENTIALS}/web-token\n"
        f"LoadCredential=redis-password:{CREDENTIALS}/redis-password\nLogsDirectory=mpqueue/orders\n",
        "docs/howto/dashboard.md, Security: the token (and the broker's password) as credentials; "
        "docs/howto/systemd.md, A log file besides the journal: the dashboard writes the service's log file too"),
    "mpqueue@frozen.service.d/watchdog.conf": (
        "[Service]\nWatchdogSec=3s\n",
        "a shorter watchdog than the unit's 30 s, so the frozen-supervisor test fires within seconds"),
}


def settings(text: str) -> list[str]:
    """The keys a unit file's text sets (section headers and comments skipped)."""
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            keys.append(line.split("=", 1)[0].strip())
    return keys
