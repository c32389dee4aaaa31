"""dbmail_tap run against forged log lines: a client who controls a
username (DBMail logs it unescaped) or a line of another daemon must never
get someone else banned, while real failures around it still count."""
import time

import pytest

from support.tap import TapDaemon, append, imap_fail, noise, wait_for

VICTIM = "192.0.2.66"
PTR = "[0x55d0c0ffee10] "
FILE_HEAD = ("Nov 26 10:00:01 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] "
             "dbmail_imap_session_handle_auth(+1448): ")
SYSLOG_HEAD = "Nov 26 10:00:01 mail dbmail/imap4d[1234]: Notice: "


@pytest.fixture
def tap(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server)
    open(t.logfile, "w").close()
    yield t
    t.kill()


def forged_username(lines=5):
    """About the issue's 975 bytes: a newline, then whole lines in DBMail's
    file-log format naming the victim."""
    return "x\n" + "".join(imap_fail(VICTIM, user="v") for _ in range(lines)) + "tail"


def test_a_username_with_newlines_bans_no_one_it_names(tap):
    tap.start()
    user = forged_username()
    assert len(user) > 880
    for i in range(3):
        message = FILE_HEAD + PTR + "login rejected: user [%s] from [203.0.113.250:%d]" % (
            user, 40000 + i)
        if i == 0:
            # DBMail writes the message, then its newline: read in between
            append(tap.logfile, message)
            time.sleep(0.1)
            append(tap.logfile, "\n")
        else:
            append(tap.logfile, message + "\n")
    # past DBMail's message limit the log is the log again
    append(tap.logfile, "".join(noise(n) for n in range(40)))
    for _ in range(3):
        append(tap.logfile, imap_fail("198.51.100.30"))
    wait_for(lambda: tap.banned("198.51.100.30"), what="the real attacker after it banned")
    assert not tap.banned(VICTIM)
    assert tap.window("dbmail-imap", VICTIM) == 0
    assert tap.stop() == 0


def test_other_daemons_lines_in_mail_log_ban_no_one(build_dir, tmp_path, redis_server):
    """The issue's mail.log case: five Postfix lines ending in a client's
    text shaped like a DBMail rejection."""
    t = TapDaemon(build_dir, tmp_path, redis_server)
    open(t.logfile, "w").close()
    try:
        t.start()
        postfix = ("Nov 26 10:00:01 mail postfix/smtpd[4242]: warning: non-SMTP command from "
                   "unknown[198.51.100.3]: login rejected: user [x] from [203.0.113.9:1]\n")
        append(t.logfile, postfix * 5)
        for _ in range(3):
            append(t.logfile, SYSLOG_HEAD + PTR
                   + "login rejected: user [bob] from [198.51.100.31:4000]\n")
        wait_for(lambda: t.banned("198.51.100.31"), what="the DBMail lines after them counted")
        assert not t.banned("203.0.113.9")
        assert t.window("dbmail-imap", "203.0.113.9") == 0
        assert t.stop() == 0
    finally:
        t.kill()


def test_through_syslog_an_escaped_username_counts_for_its_sender_only(tap):
    """rsyslog writes a username's newline as #012: one login, one line,
    counted for the address DBMail wrote at its end."""
    tap.start()
    user = forged_username().replace("\n", "#012")
    for i in range(3):
        append(tap.logfile, SYSLOG_HEAD + PTR
               + "login rejected: user [%s] from [203.0.113.251:%d]\n" % (user, 40000 + i))
    wait_for(lambda: tap.banned("203.0.113.251"), what="the sender banned")
    assert not tap.banned(VICTIM)
    assert tap.window("dbmail-imap", VICTIM) == 0
    assert tap.stop() == 0
