"""hil/aptrepo.py with the real reprepro and gpg: a repository made from a small .deb is signed
by the generated key (gpgv with only the exported keyring accepts InRelease), lists the package
with the .deb's own checksum, replaces it with a newer version, and a changed InRelease no
longer verifies. (apt itself installing, upgrading and refusing through it in the arm64 chroot
is not tested yet: docs/operations.md.)"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from hil import aptrepo


def _deb(tmp: Path, version: str) -> Path:
    tree = tmp / f"tree-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: fleet-agent\nVersion: {version}\nArchitecture: arm64\n"
        "Section: misc\nPriority: optional\nMaintainer: test <t@localhost>\n"
        "Description: test package\n")
    (tree / "usr/share/doc/fleet-agent").mkdir(parents=True)
    (tree / "usr/share/doc/fleet-agent/v").write_text(version)
    deb = tmp / f"fleet-agent_{version}_arm64.deb"
    subprocess.run(["dpkg-deb", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def gnupg_homes(tmp_path):
    """Two GNUPGHOMEs; the gpg-agent each one starts is stopped after the test."""
    homes = [tmp_path / "gnupg", tmp_path / "gnupg2"]
    yield homes
    for home in homes:
        if home.exists():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           capture_output=True)


def _verifies(keyring: Path, inrelease: Path) -> bool:
    return subprocess.run(["gpgv", "--keyring", str(keyring), str(inrelease)],
                          capture_output=True).returncode == 0


def _packages(repo: Path) -> str:
    return (repo / "dists/bookworm/main/binary-arm64/Packages").read_text()


def test_publish_signs_lists_replaces_and_a_changed_release_fails(tmp_path, gnupg_homes):
    gnupg, keyring, repo = gnupg_homes[0], tmp_path / "fleet.gpg", tmp_path / "repo"
    key = aptrepo.keygen(str(gnupg), keyring)
    first = _deb(tmp_path, "0.2.0-1")
    aptrepo.publish(repo, key, [first], str(gnupg))

    inrelease = repo / "dists/bookworm/InRelease"
    assert _verifies(keyring, inrelease)
    assert (repo / "dists/bookworm/Release.gpg").exists()
    packages = _packages(repo)
    assert "Version: 0.2.0-1\n" in packages
    assert f"SHA256: {hashlib.sha256(first.read_bytes()).hexdigest()}\n" in packages

    aptrepo.publish(repo, key, [_deb(tmp_path, "0.2.0-2")], str(gnupg))
    packages = _packages(repo)
    assert "Version: 0.2.0-2\n" in packages and "Version: 0.2.0-1\n" not in packages
    assert _verifies(keyring, inrelease)

    # another key's keyring does not vouch for it, and a changed byte breaks the signature
    other = tmp_path / "other.gpg"
    aptrepo.keygen(str(gnupg_homes[1]), other)
    assert not _verifies(other, inrelease)
    text = inrelease.read_text()
    inrelease.write_text(text.replace("Codename: bookworm", "Codename: bookwarm"))
    assert not _verifies(keyring, inrelease)


def test_rendered_config_refuses_what_would_break_its_file():
    assert "SignWith: 0xABCDEF12\n" in aptrepo.distributions("0xABCDEF12")
    text = aptrepo.sources("http://127.0.0.1:8000/fleet")
    assert text.splitlines()[-1] == f"Signed-By: {aptrepo.KEYRING_PATH}"
    for bad in ("ABCD\nSignWith: x", "not-hex", ""):
        with pytest.raises(ValueError):
            aptrepo.distributions(bad)
    for url in ("http://x/ y", "ftp://x", "http://x\nTrusted: yes"):
        with pytest.raises(ValueError):
            aptrepo.sources(url)
    with pytest.raises(ValueError):
        aptrepo.sources("http://x", "relative.gpg")
