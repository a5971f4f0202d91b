"""A signed apt repository of the fleet packages, made with Debian's reprepro from built .debs,
so a Raspberry Pi runs `apt install fleet-agent` and a fleet upgrades with `apt upgrade`.

    python -m hil.aptrepo keygen --gnupghome DIR --keyring fleet.gpg [--name "Fleet archive"]
    python -m hil.aptrepo publish --repo DIR --key KEYID [--gnupghome DIR] run/*.deb
    python -m hil.aptrepo sources --url https://apt.example.org/fleet > fleet.sources

`publish` creates the repository on first use (conf/distributions) and adds each .deb; a newer
version of a package replaces the one published (reprepro keeps one per distribution and
architecture), and the Release file is signed again (InRelease, Release.gpg) with the key.
The directory is served as-is by any static web server. `keygen` makes a signing key without a
passphrase (tests, or a dedicated build machine) and writes its public half as the binary
keyring apt's `Signed-By` reads; operators with their own key export it the same way
(`gpg --export KEYID > fleet.gpg`, docs/operations.md).

Why reprepro rather than aptly: the repository is one directory of plain files described by
one text file (conf/distributions), published in place by one command per .deb, with no
database or snapshot/publish steps to keep in step; aptly's snapshots and mirrors are for
curating many upstream repositories, which we do not have.

The text reprepro and apt read (conf/distributions, the deb822 .sources) is rendered by pure
functions; the edges run reprepro and gpg.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# the Debian release the packages are built for: the agent's virtualenv is made by its Python
# (3.11), so a package is only good on that release
CODENAME = "bookworm"
COMPONENT = "main"
# the architectures the packages are built for (the agent on a Pi 4/5 is arm64, armhf for
# 32-bit Raspberry Pi OS, amd64 for the backend and x86 gateways)
ARCHITECTURES = ("amd64", "arm64", "armhf")
ORIGIN = "fleet-agent"
# where the operator puts the repository's public key, the place Debian's apt documents for
# keys of third-party repositories (sources.list(5), Signed-By)
KEYRING_PATH = "/etc/apt/keyrings/fleet-archive-keyring.gpg"
# a key id or fingerprint as gpg prints it: hex only, so it is safe in reprepro's config file
_KEY_ID = re.compile(r"^(0x)?[0-9A-Fa-f]{8,40}$")
# a repository URL apt can fetch: no spaces or newlines that would break the deb822 stanza
_URL = re.compile(r"^(https?|file)://[^\s]+$")


def distributions(key_id: str) -> str:
    """reprepro's conf/distributions: one distribution, signed with `key_id`."""
    if not _KEY_ID.match(key_id):
        raise ValueError(f"not a gpg key id or fingerprint: {key_id!r}")
    return (f"Origin: {ORIGIN}\n"
            f"Label: {ORIGIN}\n"
            f"Codename: {CODENAME}\n"
            f"Architectures: {' '.join(ARCHITECTURES)}\n"
            f"Components: {COMPONENT}\n"
            f"Description: fleet-agent and fleet-backend packages\n"
            f"SignWith: {key_id}\n")


def sources(url: str, keyring: str = KEYRING_PATH) -> str:
    """The deb822 /etc/apt/sources.list.d/fleet.sources an operator installs once: the
    repository trusted only for what `keyring` signed (Signed-By), not for all of apt's keys."""
    if not _URL.match(url):
        raise ValueError(f"not an http(s) or file URL: {url!r}")
    if not keyring.startswith("/") or any(c.isspace() for c in keyring):
        raise ValueError(f"Signed-By must be an absolute path without spaces: {keyring!r}")
    return (f"Types: deb\n"
            f"URIs: {url}\n"
            f"Suites: {CODENAME}\n"
            f"Components: {COMPONENT}\n"
            f"Signed-By: {keyring}\n")


def _gpg_env(gnupghome: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if gnupghome:
        env["GNUPGHOME"] = str(gnupghome)
    return env


def keygen(gnupghome: str, keyring: Path, name: str = "Fleet archive signing key") -> str:
    """A new ed25519 signing key (no passphrase) in `gnupghome`; its public key written to
    `keyring` (binary, for Signed-By). Returns the key's fingerprint."""
    Path(gnupghome).mkdir(mode=0o700, parents=True, exist_ok=True)
    env = _gpg_env(gnupghome)
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key",
                    f"{name} <fleet-archive@localhost>", "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env,
                         check=True, capture_output=True, text=True).stdout
    fingerprint = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")][-1]
    export(gnupghome, fingerprint, keyring)
    return fingerprint


def export(gnupghome: str | None, key_id: str, keyring: Path) -> None:
    """Write the public key `key_id` as a binary keyring file (what Signed-By reads)."""
    data = subprocess.run(["gpg", "--batch", "--export", key_id], env=_gpg_env(gnupghome),
                          check=True, capture_output=True).stdout
    if not data:
        raise ValueError(f"gpg has no public key {key_id!r}")
    keyring.write_bytes(data)
    keyring.chmod(0o644)  # apt's download user (_apt) reads it


def publish(repo: Path, key_id: str, debs: Sequence[Path], gnupghome: str | None = None) -> None:
    """Add `debs` to the repository at `repo` (created if new) and sign its Release files."""
    conf = repo / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "distributions").write_text(distributions(key_id))
    env = _gpg_env(gnupghome)
    for deb in debs:
        out = subprocess.run(["reprepro", "--basedir", str(repo), "includedeb", CODENAME,
                              str(deb)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"reprepro includedeb {deb.name} failed:\n{out.stderr[-3000:]}")
    # signs again even when nothing changed (e.g. a new key after a rotation)
    out = subprocess.run(["reprepro", "--basedir", str(repo), "export", CODENAME], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"reprepro export failed:\n{out.stderr[-3000:]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.aptrepo", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    kg = sub.add_parser("keygen", help="make a signing key and its Signed-By keyring")
    kg.add_argument("--gnupghome", required=True)
    kg.add_argument("--keyring", required=True, type=Path)
    kg.add_argument("--name", default="Fleet archive signing key")
    pb = sub.add_parser("publish", help="add .debs to the repository and sign it")
    pb.add_argument("--repo", required=True, type=Path)
    pb.add_argument("--key", required=True, help="the signing key's id or fingerprint")
    pb.add_argument("--gnupghome", help="default: gpg's own ($GNUPGHOME or ~/.gnupg)")
    pb.add_argument("debs", nargs="+", type=Path)
    sc = sub.add_parser("sources", help="print the operator's deb822 .sources file")
    sc.add_argument("--url", required=True)
    sc.add_argument("--keyring", default=KEYRING_PATH)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "keygen":
            print(keygen(args.gnupghome, args.keyring, args.name))
        elif args.cmd == "publish":
            publish(args.repo, args.key, args.debs, args.gnupghome)
        else:
            sys.stdout.write(sources(args.url, args.keyring))
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"aptrepo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
