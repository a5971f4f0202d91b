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
