"""The strict text-format reader the metrics tests rely on: it accepts what
Prometheus accepts and refuses each thing the format (or this project's
rule for it) forbids, so a test that passes through it means something.
Where promtool is installed it must agree."""
import pytest

from support.promtext import FormatError, parse, promtool, promtool_check, value

GOOD = (
    '# HELP mailguard_x_total Things (a \\\\ and a \\n inside).\n'
    '# TYPE mailguard_x_total counter\n'
    'mailguard_x_total{jail="a"} 3\n'
    'mailguard_x_total{jail="b \\"q\\" \\\\ \\n"} 0\n'
    '# HELP mailguard_y A gauge.\n'
    '# TYPE mailguard_y gauge\n'
    'mailguard_y -1.5e3\n'
    '# HELP mailguard_z Another.\n'
    '# TYPE mailguard_z gauge\n'
    'mailguard_z +Inf 1700000000000\n'
)

BAD = {
    "no newline at the end": "# HELP a_total x\n# TYPE a_total counter\na_total 1",
    "sample without TYPE": "# HELP a x\na 1\n",
    "sample without HELP": "# TYPE a gauge\na 1\n",
    "TYPE after the samples": "# HELP a x\n# TYPE a gauge\na 1\n# TYPE a gauge\n",
    "two TYPE lines": "# HELP a x\n# TYPE a gauge\n# TYPE a counter\na 1\n",
    "two HELP lines": "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n",
    "unknown type": "# HELP a x\n# TYPE a number\na 1\n",
    "counter without _total": "# HELP a x\n# TYPE a counter\na 1\n",
    "negative counter": "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
    "duplicate series": "# HELP a x\n# TYPE a gauge\na{j=\"1\"} 1\na{j=\"1\"} 2\n",
    "label twice": "# HELP a x\n# TYPE a gauge\na{j=\"1\",j=\"2\"} 1\n",
    "bad metric name": "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
    "bad label name": "# HELP a x\n# TYPE a gauge\na{1j=\"1\"} 1\n",
    "reserved label name": "# HELP a x\n# TYPE a gauge\na{__j=\"1\"} 1\n",
    "unquoted label value": "# HELP a x\n# TYPE a gauge\na{j=1} 1\n",
    "bad escape in a label": "# HELP a x\n# TYPE a gauge\na{j=\"\\t\"} 1\n",
    "unterminated label value": "# HELP a x\n# TYPE a gauge\na{j=\"1} 1\n",
    "bad escape in HELP": "# HELP a x\\t\n# TYPE a gauge\na 1\n",
    "value not a float": "# HELP a x\n# TYPE a gauge\na one\n",
    "no value": "# HELP a x\n# TYPE a gauge\na\n",
    "two spaces": "# HELP a x\n# TYPE a gauge\na  1\n",
    "bad timestamp": "# HELP a x\n# TYPE a gauge\na 1 soon\n",
    "families interleaved": ("# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\n"
                             "a{j=\"1\"} 1\nb 1\na{j=\"2\"} 1\n"),
}


def test_the_reader_accepts_the_text_format():
    fams = parse(GOOD)
    assert fams["mailguard_x_total"]["type"] == "counter"
    assert fams["mailguard_x_total"]["help"] == "Things (a \\ and a \n inside)."
    assert value(fams, "mailguard_x_total", jail="a") == 3
    assert value(fams, "mailguard_x_total", jail='b "q" \\ \n') == 0
    assert value(fams, "mailguard_y") == -1500
    assert value(fams, "mailguard_z") == float("inf")


@pytest.mark.parametrize("why", sorted(BAD))
def test_the_reader_refuses(why):
    with pytest.raises(FormatError):
        parse(BAD[why])


def test_promtool_agrees_where_installed():
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed (Debian: prometheus); the strict reader stands in")
    ok, out = promtool_check(GOOD, tool)
    assert ok, out
    # what promtool itself refuses, the reader refuses too
    for why in ("counter without _total", "sample without HELP", "unterminated label value",
                "value not a float", "bad escape in a label"):
        ok, out = promtool_check(BAD[why], tool)
        assert not ok, (why, out)
