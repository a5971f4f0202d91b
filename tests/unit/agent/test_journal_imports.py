"""The journal loads without the wire codec: it stores and drains readings already in wire
form (geostream/encoded.py), and every boot of tests/system/journal/test_powercut_vm.py's
emulated guest paid seconds for the codec's messages, commands and DEFLATE dictionaries
before it could report what survived the cut."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_journal_imports_neither_the_codec_nor_compression():
    probe = ("import sys, agent.journal; "
             "print(sorted(m for m in ('geostream.codec', 'geostream.deflate', "
             "'geostream.messages') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["[]"]
