"""Every bad MailGuard directive fails `apache2 -t` with a message naming
the directive; every documented form of a good one passes."""
import pytest

from support.httpd import Httpd, need_module  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("need_module")

GOOD_SERVER = """
MailGuardRedis redis://:s3cret@127.0.0.1:6390/2
MailGuardKeyPrefix site1:
MailGuardBanTableSize 4096
MailGuardPrefixFloor /8 24
MailGuardIPv6Prefix 56
MailGuardDenyStatus 429
"""

GOOD_VHOST = r"""
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardJail webmail
    MailGuardMaxRetry 5
    MailGuardFindTime 1h30m
    MailGuardBanTime 2d
    MailGuardBanTimeIncrement On
    MailGuardBanTimeFactor 1.5
    MailGuardBanTimeMax 1w
    MailGuardIgnoreIP 127.0.0.1 10.0.0.0/8 192.168.1.7 ::1 2001:db8::/32
    MailGuardIPv6Prefix 48
    MailGuardDenyStatus 503
    <Location "/squirrelmail/">
        MailGuardWatch squirrelmail
        MailGuardJail sm
        MailGuardMaxRetry 3
        MailGuardFindTime 600
        MailGuardBanTime 45s
        MailGuardBanTimeIncrement Off
        MailGuardIgnoreIP 198.51.100.0/24
        MailGuardDenyStatus 404
    </Location>
    <Location "/horde/">
        MailGuardFailure POST ^/horde/login\.php$ 200,401
        MailGuardFailure PUT "^/horde/api/(auth|login)$" 403
    </Location>
    <Location "/static/">
        MailGuardEngine Off
    </Location>
"""

# (directive, where, text): where is "server" (main config), "vhost"
# (inside <VirtualHost>) or "location" (inside a <Location> in the vhost).
BAD = [
    ("MailGuardEngine", "vhost", "MailGuardEngine maybe"),
    ("MailGuardEngine", "vhost", "MailGuardEngine"),
    ("MailGuardWatch", "vhost", "MailGuardWatch horde"),
    ("MailGuardWatch", "vhost", "MailGuardWatch"),
    ("MailGuardMaxRetry", "vhost", "MailGuardMaxRetry 0"),
    ("MailGuardMaxRetry", "vhost", "MailGuardMaxRetry abc"),
    ("MailGuardMaxRetry", "vhost", "MailGuardMaxRetry -3"),
    ("MailGuardMaxRetry", "vhost", "MailGuardMaxRetry 5x"),
    ("MailGuardMaxRetry", "location", "MailGuardMaxRetry 99999999999999999999"),
    ("MailGuardFindTime", "vhost", "MailGuardFindTime 10x"),
    ("MailGuardFindTime", "vhost", "MailGuardFindTime -5m"),
    ("MailGuardFindTime", "vhost", "MailGuardFindTime 0"),
    ("MailGuardBanTime", "vhost", "MailGuardBanTime soon"),
    ("MailGuardBanTime", "vhost", "MailGuardBanTime 0"),
    ("MailGuardBanTime", "location", "MailGuardBanTime 1y"),
    ("MailGuardBanTime", "vhost", "MailGuardBanTime 999999w"),
    ("MailGuardBanTimeIncrement", "vhost", "MailGuardBanTimeIncrement sometimes"),
    ("MailGuardBanTimeFactor", "vhost", "MailGuardBanTimeFactor abc"),
    ("MailGuardBanTimeFactor", "vhost", "MailGuardBanTimeFactor 0.5"),
    ("MailGuardBanTimeMax", "vhost", "MailGuardBanTimeMax forever"),
    ("MailGuardIPv6Prefix", "vhost", "MailGuardIPv6Prefix 0"),
    ("MailGuardIPv6Prefix", "vhost", "MailGuardIPv6Prefix 129"),
    ("MailGuardIPv6Prefix", "server", "MailGuardIPv6Prefix abc"),
    ("MailGuardIPv6Prefix", "location", "MailGuardIPv6Prefix 64"),
    ("MailGuardDenyStatus", "vhost", "MailGuardDenyStatus 200"),
    ("MailGuardDenyStatus", "vhost", "MailGuardDenyStatus 302"),
    ("MailGuardDenyStatus", "vhost", "MailGuardDenyStatus 600"),
    ("MailGuardDenyStatus", "location", "MailGuardDenyStatus forbidden"),
    ("MailGuardIgnoreIP", "vhost", "MailGuardIgnoreIP 10.0.0.0/33"),
    ("MailGuardIgnoreIP", "vhost", "MailGuardIgnoreIP 127.0.0.1 2001:db8::/129"),
    ("MailGuardIgnoreIP", "vhost", "MailGuardIgnoreIP mail.example.org"),
    ("MailGuardIgnoreIP", "vhost", "MailGuardIgnoreIP 0.0.0.0/0"),
    ("MailGuardIgnoreIP", "location", "MailGuardIgnoreIP 256.1.1.1"),
    ("MailGuardFailure", "vhost", "MailGuardFailure POST ^/login([ 401"),
    ("MailGuardFailure", "vhost", "MailGuardFailure POST ^/login$ abc"),
    ("MailGuardFailure", "vhost", "MailGuardFailure POST ^/login$ 401,,403"),
    ("MailGuardFailure", "vhost", "MailGuardFailure POST ^/login$ 99"),
    ("MailGuardFailure", "vhost", "MailGuardFailure POST ^/login$ 401,1000"),
    ("MailGuardFailure", "location", "MailGuardFailure POST ^/login$"),
    ("MailGuardRedis", "server", "MailGuardRedis http://127.0.0.1:6379"),
    ("MailGuardRedis", "server", "MailGuardRedis redis://127.0.0.1:99999"),
    ("MailGuardRedis", "server", "MailGuardRedis redis://[::1:6379"),
    ("MailGuardRedis", "server", "MailGuardRedis redis://127.0.0.1:6379/db"),
    ("MailGuardRedis", "vhost", "MailGuardRedis redis://127.0.0.1:6379"),
    ("MailGuardRedis", "location", "MailGuardRedis none"),
    ("MailGuardKeyPrefix", "vhost", "MailGuardKeyPrefix other:"),
    ("MailGuardBanTableSize", "vhost", "MailGuardBanTableSize 1024"),
    ("MailGuardPrefixFloor", "server", "MailGuardPrefixFloor 0 32"),
    ("MailGuardPrefixFloor", "server", "MailGuardPrefixFloor 16 129"),
    ("MailGuardPrefixFloor", "server", "MailGuardPrefixFloor 16"),
    ("MailGuardPrefixFloor", "server", "MailGuardPrefixFloor sixteen 32"),
    ("MailGuardPrefixFloor", "vhost", "MailGuardPrefixFloor 16 32"),
    ("MailGuardBanTableSize", "server", "MailGuardBanTableSize 0"),
    ("MailGuardBanTableSize", "server", "MailGuardBanTableSize lots"),
    ("MailGuardSyncInterval", "vhost", "MailGuardSyncInterval 5s"),
    ("MailGuardSyncInterval", "server", "MailGuardSyncInterval 0"),
    ("MailGuardSyncInterval", "server", "MailGuardSyncInterval often"),
    ("MailGuardJail", "vhost", "MailGuardJail"),
]


def place(where, text):
    if where == "server":
        return text, ""
    if where == "vhost":
        return "", "    " + text
    return "", '    <Location "/x/">\n        %s\n    </Location>' % text


@pytest.fixture
def srv():
    s = Httpd(name="configtest")
    yield s
    s.cleanup()


def test_documented_directives_with_good_values_pass_configtest(srv):
    srv.write_conf(server_conf=GOOD_SERVER, vhost_conf=GOOD_VHOST)
    rc, out = srv.configtest()
    assert rc == 0, out
    assert "Syntax OK" in out


@pytest.mark.parametrize("url", ["none", "redis://127.0.0.1", "redis://[::1]:6380",
                                 "redis://user:p%40ss@localhost:6379/3",
                                 "unix:/run/redis/redis.sock?db=1"])
def test_redis_url_forms_pass_configtest(srv, url):
    srv.write_conf(server_conf="MailGuardRedis %s" % url, vhost_conf="    MailGuardEngine On")
    rc, out = srv.configtest()
    assert rc == 0, out


@pytest.mark.parametrize("directive,where,text", BAD,
                         ids=["%s-%s-%s" % (d, w, t.split(" ", 1)[-1]) for d, w, t in BAD])
def test_bad_directive_fails_configtest_naming_it(srv, directive, where, text):
    server_conf, vhost_conf = place(where, text)
    srv.write_conf(server_conf=server_conf, vhost_conf=vhost_conf)
    rc, out = srv.configtest()
    assert rc != 0, "accepted: %s\n%s" % (text, out)
    assert "Syntax error" in out, out
    # The message after the "Syntax error on line N of FILE:" header.
    message = out.split("Syntax error", 1)[1].split(":", 1)[1] if ":" in out else out
    assert directive in message, "message does not name %s:\n%s" % (directive, out)


def test_redis_password_is_never_printed(srv):
    srv.write_conf(server_conf="MailGuardRedis http://:Hunter2secret@127.0.0.1:6379",
                   vhost_conf="    MailGuardEngine On")
    rc, out = srv.configtest()
    assert rc != 0
    assert "Hunter2secret" not in out
