"""`make mutation`: do the tests fail when the code that decides who may do what, and what reaches the
cloud, is wrong?

mutmut (pinned in requirements-mutation.txt; the configuration is [tool.mutmut] in pyproject.toml)
changes one thing at a time in the functions named below (a `<=` for a `<`, a dropped condition, a
changed string) and runs the unit-tier tests that reach that function: a mutant that no test notices
"survived". This prints the score by module and every survivor with its change, and exits 1 when
fewer than TARGET of the mutants were killed. Not part of `make test`: it takes minutes.

Run from the repository's root in the venv `make mutation` builds (.venv-mutation: the test
requirements and mutmut, and no editable install, so the tests import mutmut's mutated copy).
"""

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

TARGET = 0.90
MUTMUT = str(Path(sys.executable).parent / "mutmut")

# The functions whose mutants count (mutmut's names: module.x_function, module.xǁClassǁmethod).
FUNCTIONS = [
    # Tokens and permissions.
    "cloudprovisioner.auth.x_verify_jwt*", "cloudprovisioner.auth.x__b64url*",
    "cloudprovisioner.auth.x_authorize*", "cloudprovisioner.auth.x_signing_key*",
    "cloudprovisioner.auth.x_token_hash*",
    # What a server may be made with.
    "cloudprovisioner.validation.*",
    "cloudprovisioner.servers.x_create_schema*", "cloudprovisioner.servers.x__object_id*",
    "cloudprovisioner.servers.x__user_data*",
    # Firewall rules, and what they become in the cloud.
    "cloudprovisioner.firewalls.x__ports*", "cloudprovisioner.firewalls.x__address*",
    "cloudprovisioner.firewalls.x__opens_world*", "cloudprovisioner.firewalls.x__rule*",
    "cloudprovisioner.firewalls.x_same_rules*",
    # VPC ranges.
    "cloudprovisioner.vpcs.x_ip_range*",
    # What makes two requests one for an Idempotency-Key.
    "cloudprovisioner.web.idempotency.x_fingerprint*", "cloudprovisioner.web.idempotency.x_key_of*",
    # The text a VMCP configuration's signature covers.
    "cloudprovisioner.vmcpkeys.x_signed_text*", "cloudprovisioner.vmcpkeys.x__checked_keys*",
    "cloudprovisioner.vmcpkeys.x__value_text*", "cloudprovisioner.vmcpkeys.x__urlencode*",
    # What the monitor takes for this installation's (tags and names) and how old a droplet is.
    "cloudprovisioner.ownership.x_row_id_in*", "cloudprovisioner.ownership.x_tenant_in*",
    "cloudprovisioner.ownership.x_cloud_name*", "cloudprovisioner.ownership.x_install_id*",
    "cloudprovisioner.monitor.x__age*",
]
KILLED = {"killed"}
NOT_RUN = {"not checked"}


def results():
    """{mutant name: status} for every mutant mutmut knows, as `mutmut results --all true` prints them."""
    printed = subprocess.run([MUTMUT, "results", "--all", "true"],
                             capture_output=True, text=True, check=True).stdout
    found = {}
    for line in printed.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("cloudprovisioner."):
            found[name] = status
    return found


def counted(name):
    from fnmatch import fnmatch
    return any(fnmatch(name, pattern) for pattern in FUNCTIONS)


def main():
    subprocess.run([MUTMUT, "run", *FUNCTIONS], check=False,
                   stdout=subprocess.DEVNULL)
    mine = {name: status for name, status in results().items() if counted(name)}
    by_module = defaultdict(Counter)
    for name, status in mine.items():
        by_module[name.split(".x")[0]][status] += 1
    print(f"{'module':40} {'mutants':>8} {'killed':>8} {'score':>7}")
    for module, statuses in sorted(by_module.items()):
        total = sum(statuses.values())
        killed = sum(statuses[status] for status in KILLED)
        print(f"{module:40} {total:8} {killed:8} {killed / total:7.1%}")
    total = len(mine)
    killed = sum(1 for status in mine.values() if status in KILLED)
    print(f"{'all':40} {total:8} {killed:8} {killed / max(total, 1):7.1%}   (target {TARGET:.0%})")
    others = Counter(status for status in mine.values() if status not in KILLED)
    if others:
        print("not killed:", ", ".join(f"{count} {status}" for status, count in sorted(others.items())))
    for name, status in sorted(mine.items()):
        if status not in KILLED:
            shown = subprocess.run([MUTMUT, "show", name], capture_output=True, text=True)
            print(f"\n{status}: {name}\n" + "\n".join(line for line in shown.stdout.splitlines()
                                                     if line.startswith(("+", "-")) and line[:3] not in ("+++", "---")))
    return 0 if total and killed / total >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
