"""dbmail_tap follows logs through rotation and restarts without losing
or double-counting a line."""
import os
import re
import signal
import time

import pytest

from support.tap import TapDaemon, append, imap_fail, wait_for


@pytest.fixture
def tap(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server, default={"maxretry": "1000"})
    open(t.logfile, "w").close()
    yield t
    t.kill()


def count(tap, addr):
    return tap.window("dbmail-imap", addr)


def test_rotation_by_rename_reads_the_old_file_to_its_end_and_the_new_from_0(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.1"))
    wait_for(lambda: count(tap, "203.0.113.1") == 1, what="first")
    # the writer still has the old file open after the rename
    old = open(tap.logfile, "a")
    os.rename(tap.logfile, tap.logfile + ".1")
    old.write(imap_fail("203.0.113.1"))
    old.flush()
    append(tap.logfile, imap_fail("203.0.113.2") * 2)
    old.write(imap_fail("203.0.113.1"))   # late line, within the grace time
    old.close()
    wait_for(lambda: count(tap, "203.0.113.2") == 2, what="new file from 0")
    wait_for(lambda: count(tap, "203.0.113.1") == 3, what="old file to its end")
    tap.wait_log("MG0612: .* was rotated")
    time.sleep(0.5)
    assert count(tap, "203.0.113.1") == 3 and count(tap, "203.0.113.2") == 2
    assert tap.stop() == 0


def test_rotation_with_a_gap_before_the_new_file_appears(tap):
    tap.start()
    os.rename(tap.logfile, tap.logfile + ".1")
    time.sleep(0.3)
    append(tap.logfile, imap_fail("203.0.113.3"))
    wait_for(lambda: count(tap, "203.0.113.3") == 1, what="new file")
    assert tap.stop() == 0


def test_copytruncate_restarts_at_offset_0(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.4") * 3)
    wait_for(lambda: count(tap, "203.0.113.4") == 3, what="before truncate")
    with open(tap.logfile, "r+") as f:
        f.truncate(0)
    time.sleep(0.2)
    append(tap.logfile, imap_fail("203.0.113.5"))
    wait_for(lambda: count(tap, "203.0.113.5") == 1, what="after truncate")
    assert count(tap, "203.0.113.4") == 3
    assert tap.stop() == 0


def test_copytruncate_rewritten_past_the_old_offset_is_detected(tap):
    """Truncated and refilled before the tap looks: the first line changed."""
    append(tap.logfile, "Nov 26 09:00:00 mail x[1]: first line\n")
    tap.start("--poll")
    append(tap.logfile, imap_fail("203.0.113.6"))
    wait_for(lambda: count(tap, "203.0.113.6") == 1, what="before")
    tap.send(signal.SIGSTOP)
    try:
        with open(tap.logfile, "w") as f:
            f.write("Nov 26 10:00:00 mail x[1]: another first line\n")
            f.write(imap_fail("203.0.113.7") * 4)
    finally:
        tap.send(signal.SIGCONT)
    wait_for(lambda: count(tap, "203.0.113.7") == 4, what="rewritten file read from 0")
    assert count(tap, "203.0.113.6") == 1
    assert tap.stop() == 0


def duplicates(tap):
    """Failures the tap's writer met as duplicates, in this run."""
    return sum(int(n) for n in re.findall(r"MG0626: (\d+) failures", tap.log()))


def truncate_and_refill(tap, addr, before, after):
    """`before` lines, a truncation the tap notices, then `after` lines
    that start with the very line the old content started with (the same
    message in the same second)."""
    append(tap.logfile, imap_fail(addr) * before)
    wait_for(lambda: count(tap, addr) == before, what="before the truncation")
    with open(tap.logfile, "r+") as f:
        f.truncate(0)
    tap.wait_log("MG0613: .* was truncated")
    append(tap.logfile, imap_fail(addr) * after)
    wait_for(lambda: count(tap, addr) == before + after, what="the refilled lines")


def test_a_file_refilled_with_its_old_first_line_is_new_lines_not_resent_ones(tap):
    tap.start()
    truncate_and_refill(tap, "203.0.113.8", 3, 5)
    time.sleep(0.5)
    assert count(tap, "203.0.113.8") == 8
    assert "MG0626" not in tap.log()
    assert tap.stop() == 0


def test_a_restart_after_such_a_truncation_reads_its_lines_again_as_duplicates(tap):
    tap.start()
    truncate_and_refill(tap, "203.0.113.9", 3, 5)
    assert tap.stop() == 0
    ino = os.stat(tap.logfile).st_ino
    size = os.path.getsize(tap.logfile)
    text = open(tap.statefile).read()
    m = re.search(r"^v2 %d %d ([0-9a-f]{16}) 1 %s$" % (ino, size, re.escape(tap.logfile)),
                  text, re.M)
    assert m, text
    # as if killed before the statefile caught up: it points at the start
    with open(tap.statefile, "w") as f:
        f.write("v2 %d 0 %s 1 %s\n" % (ino, m.group(1), tap.logfile))
    tap.start()
    # one line per writer round that met any: the 5 may come in two
    wait_for(lambda: duplicates(tap) == 5 or count(tap, "203.0.113.9") != 8,
             what="the 5 lines read again met as duplicates")
    time.sleep(0.3)
    assert duplicates(tap) == 5
    assert count(tap, "203.0.113.9") == 8
    assert tap.stop() == 0


def test_a_file_emptied_while_stopped_and_refilled_with_its_first_line_counts_it_all(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.7") * 5)
    wait_for(lambda: count(tap, "203.0.113.7") == 5, what="first run")
    assert tap.stop() == 0
    with open(tap.logfile, "w") as f:
        f.write(imap_fail("203.0.113.7") * 2)
    tap.start()
    wait_for(lambda: count(tap, "203.0.113.7") == 7, what="the shorter refill")
    tap.wait_log(r"MG0610: .*\(replaced while stopped")
    assert "MG0626" not in tap.log()
    assert tap.stop() == 0


def test_restart_reads_what_was_written_while_stopped_and_nothing_twice(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.10") * 3)
    wait_for(lambda: count(tap, "203.0.113.10") == 3, what="first run")
    assert tap.stop() == 0
    append(tap.logfile, imap_fail("203.0.113.10") * 2 + imap_fail("203.0.113.11"))
    tap.start()
    wait_for(lambda: count(tap, "203.0.113.11") == 1, what="written while stopped")
    time.sleep(0.3)
    assert count(tap, "203.0.113.10") == 5
    assert tap.stop() == 0
    # and a third start with nothing new reads nothing
    tap.start()
    time.sleep(0.5)
    assert count(tap, "203.0.113.10") == 5 and count(tap, "203.0.113.11") == 1
    assert tap.stop() == 0


def test_restart_keeps_a_partial_line_for_the_next_run(tap):
    tap.start()
    line = imap_fail("203.0.113.12")
    append(tap.logfile, line[:50])
    time.sleep(1.5)
    assert tap.stop() == 0
    append(tap.logfile, line[50:])
    tap.start()
    wait_for(lambda: count(tap, "203.0.113.12") == 1, what="completed across restart")
    assert tap.stop() == 0


def test_a_file_replaced_while_stopped_is_read_from_the_start(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.13") * 2)
    wait_for(lambda: count(tap, "203.0.113.13") == 2, what="first")
    assert tap.stop() == 0
    os.rename(tap.logfile, tap.logfile + ".1")
    append(tap.logfile, imap_fail("203.0.113.14") * 2)
    tap.start()
    wait_for(lambda: count(tap, "203.0.113.14") == 2, what="replaced file")
    assert count(tap, "203.0.113.13") == 2
    assert tap.stop() == 0


def test_the_statefile_is_written_atomically_and_names_the_file(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.15"))
    wait_for(lambda: count(tap, "203.0.113.15") == 1, what="line")
    assert tap.stop() == 0
    text = open(tap.statefile).read()
    ino = os.stat(tap.logfile).st_ino
    size = os.path.getsize(tap.logfile)
    assert ("v1 %d %d " % (ino, size)) in text and text.rstrip().endswith(tap.logfile)
    assert [f for f in os.listdir(tap.dir) if ".tmp." in f] == []


def test_a_corrupt_statefile_is_reported_and_files_start_at_their_end(tap):
    append(tap.logfile, imap_fail("203.0.113.16"))
    with open(tap.statefile, "w") as f:
        f.write("v1 banana\n\x00\x01garbage\n")
    tap.start()
    tap.wait_log("MG0633: .*2 unreadable lines ignored")
    append(tap.logfile, imap_fail("203.0.113.17"))
    wait_for(lambda: count(tap, "203.0.113.17") == 1, what="new line")
    assert count(tap, "203.0.113.16") == 0
    assert tap.stop() == 0


def test_an_unwritable_statefile_is_logged_not_fatal(tap):
    tap.default["statefile"] = os.path.join(tap.dir, "no-such-dir", "state")
    tap.write_config()
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.18"))
    wait_for(lambda: count(tap, "203.0.113.18") == 1, what="still counting")
    tap.wait_log("MG0630: cannot write the statefile", timeout=3)
    assert tap.stop() == 0
