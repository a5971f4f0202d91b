"""geostream/1.0's numbers, each defined once with its reason (docs/protocol.md §1–§3, §6)."""

# §1: a tunnel or dead zone of up to 3 minutes resumes the same connection; the first packet
# after a 180 s outage may come one keepalive interval later, so 180 s itself is too short.
IDLE_TIMEOUT_S = 240.0
# §1: a PING after 15 s without sending keeps carrier NAT mappings (often 20–30 s for UDP) open.
KEEPALIVE_S = 15.0
# §1 stall rule: with data in flight and nothing heard for this long, the agent sends no new
# batches, so the congestion window stays free for the PINGs that find the path again.
STALL_S = 5.0
# §2: one message may hold a whole batch; 256 KiB leaves 4× room over the default 64 KiB batch
# budget while bounding what a hostile peer can make us buffer per connection.
MAX_MESSAGE_BYTES = 256 * 1024
# §3 welcome: the largest encoded batch the gateway accepts unless it says otherwise.
DEFAULT_MAX_BATCH_BYTES = 64 * 1024
# §3 batch: the most readings one batch may carry (a receiver's limit). 4096 positions are
# ~250 KiB encoded, about the most one message can carry anyway.
MAX_BATCH_READINGS = 4096
# §3 batch: what the agent puts in one batch (a sender's choice within MAX_BATCH_READINGS): a
# quarter of the default credit, so several batches are in flight and acks flow every few
# hundred ms on a slow link while the next batch travels.
SEND_BATCH_READINGS = 1000
# §6: default credit, ~10 s of a 10 Hz GPS + CAN stream per vehicle in flight fills a 50 ms-RTT
# link, and 4096 × ~64 bytes bounds gateway memory per vehicle at ~256 KiB.
DEFAULT_CREDIT = 4096
# §2: how many CBOR containers (maps, arrays) may nest one inside the other. The deepest
# message fleet-agent sends has 6 (batch map → readings → reading → event data → dtcs array →
# one DTC map); 8 leaves room for a command's arguments and event data, and refuses a
# 10,000-deep item before it costs anything.
MAX_CBOR_DEPTH = 8
# §4: bounds on what a reading's open-ended parts (`sig`, an event's `data`) may hold. A CAN
# snapshot of every signal of a large DBC is a few hundred entries; 1024 entries of ~20 bytes
# stay well inside the default 64 KiB batch budget.
MAX_MAP_ENTRIES = 1024
MAX_ARRAY_ITEMS = 1024
# §4: a signal or data key (e.g. "CCVS1.WheelBasedVehicleSpeed@7E8") and a bus or event name.
MAX_KEY_CHARS = 128
# §4: a text value inside `sig` or `data` (an enumeration's name, a file path, a reason).
MAX_TEXT_CHARS = 1024
# §4: integers inside readings are SQL BIGINTs on both stores.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
# §4: the sane window of a reading's `ts` (configurable at the gateway, docs/configuration.md):
# nothing observed before 2000-01-01 (a GNSS receiver without a fix or a week-rollover bug
# reports 1980 or 1999), nothing more than a day ahead of the gateway's clock (time zones and a
# drifting RTC stay inside, a year-10000 timestamp does not).
TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_AHEAD_MS = 24 * 3600 * 1000
