"""Randomised frames of every message of public and shipped DBCs decode exactly as cantools'
`decode(data, decode_choices=True, scaling=True)`, except where docs/can.md says otherwise:
J1939 error / not-available raw codes are not values, and NaN/inf floats are dropped."""

import math
import random
from pathlib import Path

import pytest
from cantools.database.namedsignalvalue import NamedSignalValue

from agent.can.dbcload import DbcError, load_dbc_checked
from agent.can.decoder import CanDecoder
from tests.integration.can.can_helpers import (
    ALL_DBCS,
    frame,
    is_j1939_message,
    j1939_reserved_from,
    message_values,
    mux_variants,
)

PUBLIC = Path(__file__).resolve().parents[3] / "data" / "dbc"
UNPARSEABLE = {"opendbc_mazda_2017.dbc"}
DBCS = sorted(p for p in PUBLIC.glob("*.dbc") if p.name not in UNPARSEABLE) + list(ALL_DBCS)
FRAMES_PER_MESSAGE = 12


def expected(message, data: bytes):
    """What cantools says, with the documented exceptions applied; None if it cannot decode."""
    try:
        scaled = message.decode(data, decode_choices=True, scaling=True)
        raw = message.decode(data, decode_choices=False, scaling=False)
    except Exception:
        return None
    out = {}
    for name, value in scaled.items():
        sig = message.get_signal_by_name(name)
        if is_j1939_message(message):
            top = j1939_reserved_from(sig)
            if top is not None and sig.scale and raw[name] >= top:
                continue
        if isinstance(value, NamedSignalValue):
            value = value.name
        elif isinstance(value, float) and not math.isfinite(value):
            continue
        out[name] = value
    return out


def frames_for(message, rng: random.Random):
    """Random bytes, plus valid encodings of each multiplexer value (random bytes rarely hit
    one), plus a frame one byte short."""
    out = [bytes(rng.getrandbits(8) for _ in range(message.length))
           for _ in range(FRAMES_PER_MESSAGE)]
    if message.is_multiplexed():
        for mux in mux_variants(message):
            try:
                values, _ = message_values(message, mux, rng)
                out.append(bytes(message.encode(values, strict=False)))
            except Exception:
                continue  # cascaded multiplexers: the random frames cover them
    return out


@pytest.mark.parametrize("path", DBCS, ids=lambda p: p.name)
def test_every_message_decodes_as_cantools(path):
    db, _warnings = load_dbc_checked(path)
    dec = CanDecoder([db])
    rng = random.Random(path.name)
    seen, compared = set(), 0
    for message in db.messages:
        key = (message.frame_id, message.is_extended_frame)
        if key in seen or message.length == 0:
            continue  # the first message of an id wins (docs/can.md)
        seen.add(key)
        for data in frames_for(message, rng):
            got = dec.feed(frame(message.frame_id, data, message.is_extended_frame), 0)
            want = expected(message, data)
            assert (None if got is None else got.values) == want, (message.name, data.hex())
            compared += 1
        short = dec.feed(frame(message.frame_id, bytes(message.length - 1),
                               message.is_extended_frame), 0)
        assert short is None
    assert compared > 0


def test_non_strict_files_load_with_one_warning_per_bad_message():
    names = {p.name: len(load_dbc_checked(p)[1]) for p in DBCS}
    for name in ("opendbc_hyundai_i30_2014.dbc", "opendbc_nissan_xterra_2011.dbc",
                 "opendbc_mazda_3_2019.dbc", "opendbc_hongqi_hs5.dbc",
                 "opendbc_gwm_haval_h6_phev_2024.dbc", "opendbc_gm_global_a_lowspeed_1818125.dbc",
                 "cantools_issue_63.dbc", "cantools_bad_message_length.dbc"):
        assert names[name] >= 1, name
    assert names["opendbc_acura_ilx_2016_nidec.dbc"] == 0
    for path in ALL_DBCS:
        assert names[path.name] == 0


def test_a_file_cantools_cannot_parse_is_refused_with_its_line():
    with pytest.raises(DbcError) as info:
        load_dbc_checked(PUBLIC / "opendbc_mazda_2017.dbc")
    assert info.value.line == 273 and "opendbc_mazda_2017.dbc" in str(info.value)
