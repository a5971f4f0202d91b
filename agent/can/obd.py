"""Sans-IO OBD-II polling (ISO 15765-4 on 11-bit ids): which request to send when, and what
the answers mean. Time is an argument; the bus source sends what `on_timer` returns and hands
every answer frame to `on_frame`.

- Mode 01 PIDs, each at its own interval; mode 03 (stored) and 07 (pending) DTCs at
  `dtc_interval_ms`. Requests go to `request_id` (0x7DF functional, or an ECU's physical id);
  answers come from 0x7E8-0x7EF.
- One request at a time, at least `MIN_GAP_MS` apart: polling never floods the bus. A request
  with no answer within `ANSWER_TIMEOUT_MS` counts `obd_unanswered` and its next try backs off
  (interval x 2, 4... up to `BACKOFF_MAX_MS`); an answer resets it.
- Mode 01 answers are decoded by a CanDecoder over the shipped obd2.dbc (its `OBD2_ECM` reply
  message), whichever ECU sent them. Multi-frame answers (ISO-TP first frame + consecutive
  frames: DTC lists) are reassembled here, with a flow-control frame to the ECU. can-isotp
  parses the frames; its TransportLayer is not used because its timers read time.perf_counter
  and its API owns the bus, while this object must run on the pipeline's `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

import can

from .dbcload import BUILTIN_DIR, load_dbc
from .decoder import CanDecoder
from .dtc import parse_obd_dtcs

FUNCTIONAL_ID = 0x7DF
RESPONSE_IDS = range(0x7E8, 0x7F0)
PHYSICAL_OFFSET = 8  # an ECU answering on 0x7E8+n listens on 0x7E0+n
# ISO 15765-4 P2 is 50 ms; slow gateways and adapters take longer, so allow 250 ms.
ANSWER_TIMEOUT_MS = 250
# Gap between two requests: at most 20 requests/s, under 1 % of a 500 kbit/s bus.
MIN_GAP_MS = 50
# After the first answer, other ECUs answering a functional request get this long.
MORE_ANSWERS_MS = 30
BACKOFF_MAX_MS = 600_000  # an ECU that never answers (engine off) is asked every 10 min
ISOTP_MAX = 4095  # the longest ISO-TP message (12-bit length)
PAD = 0x55  # ISO 15765-4 recommends padding; 0x55 is what most scan tools send
DTC_MODES = {3: "stored", 7: "pending"}


@dataclass(frozen=True)
class ObdConfig:
    pids: tuple  # ((pid, interval_ms), ...)
    dtc_interval_ms: int = 60_000  # 0 = no DTC reads
    request_id: int = FUNCTIONAL_ID


@dataclass
class _Job:
    mode: int
    pid: int | None
    interval_ms: int
    due_ms: int
    failures: int = 0

    def request(self) -> bytes:
        body = bytes([self.mode]) if self.pid is None else bytes([self.mode, self.pid])
        return (bytes([len(body)]) + body).ljust(8, bytes([PAD]))


class ObdPoller:
    """`on_timer(now)` → frames to send; `on_frame(msg, now)` → (frames to send, results);
    a result is ("signals", src_id, values) or ("dtcs", src_id, set name, dtcs)."""

    def __init__(self, cfg: ObdConfig, now_ms: int):
        self.cfg = cfg
        self.counts = {"obd_requests": 0, "obd_answers": 0, "obd_unanswered": 0,
                       "obd_bad_answers": 0}
        self._jobs = [_Job(1, pid, interval, now_ms) for pid, interval in cfg.pids]
        if cfg.dtc_interval_ms:
            self._jobs += [_Job(m, None, cfg.dtc_interval_ms, now_ms) for m in DTC_MODES]
        obd2 = load_dbc(BUILTIN_DIR / "obd2.dbc")
        self._decoder = CanDecoder([obd2])
        self._reply_id = obd2.get_message_by_name("OBD2_ECM").frame_id
        self._outstanding: tuple[_Job, int] | None = None  # (job, sent at)
        self._answered = False
        self._answered_at = 0
        self._last_sent_ms = now_ms - MIN_GAP_MS
        self._rx: dict[int, tuple[int, int, bytearray, int]] = {}  # id → (len, seq, buf, t)

    def next_deadline(self) -> int:
        if self._outstanding is not None:
            return self._request_end()
        due = min((j.due_ms for j in self._jobs), default=None)
        if due is None:
            return 2**62
        return max(due, self._last_sent_ms + MIN_GAP_MS)

    def on_timer(self, now_ms: int) -> list[can.Message]:
        if self._outstanding is not None:
            job, sent = self._outstanding
            if now_ms < self._request_end():
                return []
            self._finish(job, sent, now_ms)
        if now_ms < self._last_sent_ms + MIN_GAP_MS:
            return []
        due = [j for j in self._jobs if j.due_ms <= now_ms]
        if not due:
            return []
        job = min(due, key=lambda j: j.due_ms)
        self._outstanding, self._answered = (job, now_ms), False
        self._last_sent_ms = now_ms
        self.counts["obd_requests"] += 1
        return [can.Message(arbitration_id=self.cfg.request_id, is_extended_id=False,
                            data=job.request())]

    def _request_end(self) -> int:
        end = self._outstanding[1] + ANSWER_TIMEOUT_MS
        if self._answered and self.cfg.request_id != FUNCTIONAL_ID:
            return self._answered_at  # a physical request has one answerer
        return min(end, self._answered_at + MORE_ANSWERS_MS) if self._answered else end

    def _finish(self, job: _Job, sent: int, now_ms: int) -> None:
        self._outstanding = None
        if self._answered:
            job.failures = 0
            job.due_ms = sent + job.interval_ms
        else:
            self.counts["obd_unanswered"] += 1
            job.failures += 1
            job.due_ms = now_ms + min(job.interval_ms << job.failures, BACKOFF_MAX_MS)

    def on_frame(self, msg: can.Message, now_ms: int) -> tuple[list[can.Message], list]:
        if msg.is_extended_id or msg.arbitration_id not in RESPONSE_IDS or len(msg.data) < 2:
            return [], []
        src = msg.arbitration_id
        # can-isotp is imported by the first answer, not with the module: a bus without OBD-II
        # polling never loads it (0.7 MB of the agent's RSS, docs/benchmarks.md)
        from isotp.can_message import CanMessage
        from isotp.protocol import PDU

        try:
            pdu = PDU(CanMessage(arbitration_id=src, dlc=len(msg.data), data=bytes(msg.data)))
        except Exception:  # can-isotp raises ValueError and others on malformed PCI bytes
            self.counts["obd_bad_answers"] += 1
            return [], []
        if pdu.type == PDU.Type.SINGLE_FRAME:
            return [], self._answer(src, bytes(msg.data), bytes(pdu.data), now_ms)
        if pdu.type == PDU.Type.FIRST_FRAME:
            if not 8 <= pdu.length <= ISOTP_MAX:
                self.counts["obd_bad_answers"] += 1
                return [], []
            self._rx[src] = (pdu.length, 1, bytearray(pdu.data), now_ms)
            fc = PDU.craft_flow_control_data(0, 0, 0).ljust(8, bytes([PAD]))
            return [can.Message(arbitration_id=src - PHYSICAL_OFFSET, is_extended_id=False,
                                data=fc)], []
        if pdu.type == PDU.Type.CONSECUTIVE_FRAME and src in self._rx:
            length, seq, buf, started = self._rx[src]
            if pdu.seqnum != seq & 0xF or now_ms - started > ANSWER_TIMEOUT_MS * 4:
                del self._rx[src]
                self.counts["obd_bad_answers"] += 1
                return [], []
            buf += pdu.data
            if len(buf) < length:
                self._rx[src] = (length, seq + 1, buf, started)
                return [], []
            del self._rx[src]
            return [], self._answer(src, None, bytes(buf[:length]), now_ms)
        return [], []

    def _answer(self, src: int, frame: bytes | None, payload: bytes, now_ms: int) -> list:
        """payload: the ISO-TP message (service id + 0x40 first)."""
        service = payload[0] - 0x40 if payload else -1
        if service == 1 and frame is not None and len(payload) >= 2:
            self._mark_answered(1, payload[1], now_ms)
            decoded = self._decoder.feed(
                can.Message(arbitration_id=self._reply_id, data=frame, is_extended_id=False),
                now_ms)
            if decoded is None or not decoded.values:
                return []
            values = {k: v for k, v in decoded.values.items()
                      if k not in ("RespLength", "RespService", "PID")}
            return [("signals", src, values)] if values else []
        if service in DTC_MODES:
            self._mark_answered(service, None, now_ms)
            # on CAN the answer carries a count byte before the 2-byte codes
            return [("dtcs", src, DTC_MODES[service], parse_obd_dtcs(payload[2:]))]
        self.counts["obd_bad_answers"] += 1
        return []

    def _mark_answered(self, mode: int, pid: int | None, now_ms: int) -> None:
        self.counts["obd_answers"] += 1
        if self._outstanding is not None and not self._answered:
            job = self._outstanding[0]
            if job.mode == mode and job.pid == pid:
                self._answered, self._answered_at = True, now_ms
