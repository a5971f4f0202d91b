"""The load test quotes the gateway's own loop-stall summary from its log (the last one)."""

from loadtest.run import stall_summary


def test_the_last_summary_at_stop_is_quoted(tmp_path):
    log = tmp_path / "gateway0.log"
    log.write_text("x WARNING fleet.loop: 3 loop stalls > 50 ms (longest 80 ms)\n"
                   "y WARNING backend.service: at stop: 4 loop stalls > 50 ms (longest 90 ms)\n"
                   "z WARNING backend.service: at stop: 5 loop stalls > 50 ms (longest 99 ms)\n")
    assert stall_summary(log) == "5 loop stalls > 50 ms (longest 99 ms)"


def test_no_log_or_no_stall_quotes_nothing(tmp_path):
    assert stall_summary(tmp_path / "missing.log") == ""
    (tmp_path / "quiet.log").write_text("gateway listening\n")
    assert stall_summary(tmp_path / "quiet.log") == ""
