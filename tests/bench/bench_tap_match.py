#!/usr/bin/python3
"""Matching speed: `dbmail_tap test` against fail2ban-regex and grep.

Generates a 1,000,000-line DBMail log (10% failed logins over 10,000
addresses, IPv4 and IPv6, in the file, syslog and stderr shapes, POP3
lines, accepted logins and other noise) and times, side by side in one
run on the same file:
  dbmail_tap test FILE dbmail-imap
  fail2ban-regex FILE '<the seed's failregex>'      (when installed)
  LC_ALL=C grep -cE '<an equivalent regex>' FILE
Then the same comparison with grep on logs whose failures come from one
address distribution each, since the count of addresses is a hash table
and a hash that ignores part of an address collides on exactly such
logs: random IPv4, one /16, one /24 with many ports, one IPv6 /64 with
random interface ids, IPv4-mapped ::ffff: forms (1,000,000 lines, 10%
failures each), and 1,000,000 distinct addresses (one failure each, in
2,000,000 lines).
Targets: >= 100x faster than fail2ban-regex, <= 2x grep's time on every
log.  Each tool is run several times and its best run counts; the
verdicts use CPU time (user + system, what the process itself cost,
steady on a busy machine), and wall time is printed beside it.
Environment: MG_BUILD (build dir), BENCH_LINES (default 1000000),
BENCH_DISTINCT (default 1000000), BENCH_F2B=0 to skip fail2ban-regex.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

SEED_REGEX = r'login rejected: user \[.*\] from \[<HOST>:\d*\]$'
GREP_REGEX = r'login rejected: user \[.*\] from \[[0-9A-Fa-f:.%]+:[0-9]*\]$'
N_ADDR = 10000


def addresses(rng):
    out = []
    for i in range(N_ADDR):
        if i % 4 == 3:
            out.append('2001:db8:%x:%x::%x' % (rng.randrange(65536), rng.randrange(65536),
                                              rng.randrange(1, 65536)))
        elif i % 10 == 1:
            out.append('::ffff:198.51.%d.%d' % (rng.randrange(256), rng.randrange(1, 255)))
        else:
            out.append('203.%d.%d.%d' % (rng.randrange(256), rng.randrange(256),
                                         rng.randrange(1, 255)))
    return out


USERS = ['bob', 'alice', 'admin', 'info@example.org', 'test', 'x] from [192.0.2.1:1',
         'root', 'postmaster', 'sales@example.com', 'a b [c]']


def generate(path, nlines, rng):
    addrs = addresses(rng)
    ptr = lambda: '0x%012x' % rng.randrange(1 << 44)
    imap_fail = 0
    with open(path, 'w') as f:
        for i in range(nlines):
            ts = 'Nov %02d %02d:%02d:%02d' % (1 + i // 100000, (i // 3600) % 24,
                                              (i // 60) % 60, i % 60)
            r = rng.random()
            if r < 0.10:
                a = addrs[rng.randrange(N_ADDR)]
                u = rng.choice(USERS)
                port = rng.randrange(1024, 65536)
                k = rng.random()
                if k < 0.60:
                    line = ('%s mail dbmail-imapd[%d]: [%s] Notice:[imap] '
                            'dbmail_imap_session_handle_auth(+1448): [%s] login rejected: '
                            'user [%s] from [%s:%d]' % (ts, 1000 + i % 50, ptr(), ptr(), u, a,
                                                        port))
                    imap_fail += 1
                elif k < 0.75:
                    line = ('%s mail dbmail/imap4d[%d]: Notice:[imap] '
                            'dbmail_imap_session_handle_auth(+1448): [%s] login rejected: '
                            'user [%s] from [%s:%d]' % (ts, 1000 + i % 50, ptr(), u, a, port))
                    imap_fail += 1
                elif k < 0.90:
                    line = ('%s mail dbmail/imap4d[%d]: Notice: [%s] login rejected: '
                            'user [%s] from [%s:%d]' % (ts, 1000 + i % 50, ptr(), u, a, port))
                    imap_fail += 1
                else:
                    line = ('%s mail dbmail/pop3d[%d]: Error:[pop3] pop3(+400): user [%s] '
                            'coming from [%s] tried to login with wrong password'
                            % (ts, 2000 + i % 50, u, a))
            elif r < 0.30:
                a = addrs[rng.randrange(N_ADDR)]
                line = ('%s mail dbmail-imapd[%d]: [%s] Notice:[imap] '
                        'dbmail_imap_session_handle_auth(+1460): [%s] login accepted: id [%d] '
                        'user [%s] from [%s:%d]' % (ts, 1000 + i % 50, ptr(), ptr(),
                                                   rng.randrange(1, 99999), rng.choice(USERS),
                                                   a, rng.randrange(1024, 65536)))
            elif r < 0.60:
                line = ('%s mail dbmail-imapd[%d]: [%s] Info:[imap] imap4_tokenizer(+%d): '
                        '[%s] command [%s] tag [A%d]' % (ts, 1000 + i % 50, ptr(),
                                                        rng.randrange(100, 999), ptr(),
                                                        rng.choice(['SELECT', 'FETCH', 'IDLE',
                                                                    'UID', 'LOGOUT']),
                                                        rng.randrange(1, 9999)))
            elif r < 0.80:
                line = ('%s mail dbmail-imapd[%d]: [%s] Notice:[server] server_sock_cb(+%d): '
                        'connection from [%s] on [0.0.0.0:993]'
                        % (ts, 1000 + i % 50, ptr(), rng.randrange(100, 999),
                           addrs[rng.randrange(N_ADDR)]))
            elif r < 0.95:
                line = ('%s mail dbmail-pop3d[%d]: [%s] Message:[pop3] pop3(+%d): user [%s] '
                        'logged in, %d messages' % (ts, 2000 + i % 50, ptr(),
                                                    rng.randrange(100, 999), rng.choice(USERS),
                                                    rng.randrange(0, 500)))
            else:
                line = ('%s mail dbmail-imapd[%d]: [%s] Debug:[db] db_query(+%d): [SELECT '
                        'message_idnr FROM dbmail_messages WHERE mailbox_idnr = %d]'
                        % (ts, 1000 + i % 50, ptr(), rng.randrange(100, 999),
                           rng.randrange(1, 10**6)))
            f.write(line + '\n')
    return imap_fail


NOISE_COUNT = 997


def noise_pool(rng):
    """Lines that are not failures, generated once and reused."""
    pool = []
    for i in range(NOISE_COUNT):
        ptr = '0x%012x' % rng.randrange(1 << 44)
        k = i % 3
        if k == 0:
            pool.append('Nov 26 10:%02d:%02d mail dbmail-imapd[1234]: [%s] Info:[imap] '
                        'imap4_tokenizer(+%d): [%s] command [FETCH] tag [A%d]'
                        % (i // 60 % 60, i % 60, ptr, 100 + i % 900, ptr, i))
        elif k == 1:
            pool.append('Nov 26 10:%02d:%02d mail dbmail-imapd[1234]: [%s] Notice:[imap] '
                        'dbmail_imap_session_handle_auth(+1460): [%s] login accepted: id [%d] '
                        'user [u%d] from [198.51.100.%d:%d]'
                        % (i // 60 % 60, i % 60, ptr, ptr, i, i, i % 250 + 1, 1024 + i))
        else:
            pool.append('Nov 26 10:%02d:%02d mail dbmail-pop3d[1235]: [%s] Message:[pop3] '
                        'pop3(+400): user [u%d] logged in, %d messages'
                        % (i // 60 % 60, i % 60, ptr, i, i % 500))
    return pool


def rand_v4(rng):
    return '%d.%d.%d.%d' % (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256),
                            rng.randrange(1, 255))


DISTRIBUTIONS = [
    ('random IPv4', lambda rng, i: rand_v4(rng)),
    ('one /16', lambda rng, i: '203.0.%d.%d' % (rng.randrange(256), rng.randrange(256))),
    ('one /24, many ports', lambda rng, i: '203.0.113.%d' % rng.randrange(1, 255)),
    ('one IPv6 /64', lambda rng, i: '2001:db8:1:2:%x:%x:%x:%x'
     % tuple(rng.randrange(65536) for _ in range(4))),
    ('IPv4-mapped ::ffff:', lambda rng, i: '::ffff:' + rand_v4(rng)),
]


def distinct_addr(i):
    """The i-th of the distinct addresses: 90% IPv4 counted up from
    100.64.0.0 (all sharing their leading bytes), 10% IPv6 hosts."""
    if i % 10 == 9:
        return '2001:db8:%x::%x' % (i >> 16, i & 0xffff)
    n = (100 << 24 | 64 << 16) + i
    return '%d.%d.%d.%d' % (n >> 24, n >> 16 & 255, n >> 8 & 255, n & 255)


def generate_dist(path, nlines, rng, pool, pick, every):
    """A log of nlines whose every `every`-th line is a failed IMAP login
    from pick(rng, k) (k counts the failures); the rest is noise."""
    fails = 0
    head = ('Nov 26 10:00:01 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] '
            'dbmail_imap_session_handle_auth(+1448): [0x55d0c0ffee10] login rejected: '
            'user [%s] from [%s:%d]\n')
    out = []
    with open(path, 'w') as f:
        for i in range(nlines):
            if i % every == 0:
                out.append(head % (USERS[i % 7], pick(rng, fails), rng.randrange(1024, 65536)))
                fails += 1
            else:
                out.append(pool[i % NOISE_COUNT] + '\n')
            if len(out) >= 65536:
                f.write(''.join(out))
                out = []
        f.write(''.join(out))
    return fails


def run_timed(cmd, env=None, repeat=1):
    """Best (wall, cpu) seconds over repeat runs, max RSS (KiB), stdout of the last.

    The command runs under time(1), which reports its maximum RSS (a
    process forked from this one would count this interpreter's pages
    until it execs).  CPU time is wait4's rusage of time(1), which
    includes the command it waited for, in microseconds: time(1)'s own
    10 ms ticks are coarser than a whole run on some of these logs."""
    best = None
    best_cpu = None
    out = ''
    rss = 0
    for _ in range(repeat):
        with tempfile.TemporaryFile() as errf:
            t0 = time.perf_counter()
            p = subprocess.Popen(['/usr/bin/time', '-v'] + cmd, stdout=subprocess.PIPE,
                                 stderr=errf, env=env)
            stdout = p.stdout.read()
            p.stdout.close()
            _, status, ru = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t0
            p.returncode = rc = os.waitstatus_to_exitcode(status)
            errf.seek(0)
            stderr = errf.read().decode(errors='replace')
        if rc != 0 and not cmd[0].endswith('grep'):
            raise SystemExit('command failed (%d): %s\n%s' % (rc, ' '.join(cmd), stderr[-2000:]))
        m = re.search(r'Maximum resident set size \(kbytes\): (\d+)', stderr)
        rss = int(m.group(1)) if m else 0
        cpu = ru.ru_utime + ru.ru_stime
        out = stdout.decode()
        best = dt if best is None else min(best, dt)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    return (best, best_cpu), rss, out


def main():
    build = os.environ.get('MG_BUILD', 'build')
    tap = os.path.join(build, 'dbmail_tap')
    nlines = int(os.environ.get('BENCH_LINES', '1000000'))
    if not os.access(tap, os.X_OK):
        raise SystemExit('%s not built' % tap)
    rng = random.Random(20261126)
    tmp = tempfile.mkdtemp(prefix='bench_tap_match.')
    try:
        log = os.path.join(tmp, 'dbmail.log')
        t0 = time.perf_counter()
        expected = generate(log, nlines, rng)
        print('generated %d lines (%d IMAP failures, %.1f MB) in %.1f s'
              % (nlines, expected, os.path.getsize(log) / 1e6, time.perf_counter() - t0))
        cenv = dict(os.environ, LC_ALL='C')

        # warm the page cache, then time each tool on the same file
        run_timed(['cat', log])
        t_tap, rss_tap, out = run_timed([tap, 'test', log, 'dbmail-imap'], repeat=5)
        m = re.search(r'Lines:\s+(\d+) read, (\d+) matched, (\d+) ignored', out)
        tap_lines, tap_matched, tap_ign = (int(x) for x in m.groups())
        t_tapre, rss_tapre, out = run_timed([tap, 'test', log, SEED_REGEX], repeat=5)
        m = re.search(r'Lines:\s+(\d+) read, (\d+) matched', out)
        tapre_matched = int(m.group(2))
        t_grep, rss_grep, out = run_timed(['grep', '-cE', GREP_REGEX, log], env=cenv, repeat=5)
        grep_count = int(out.strip() or 0)

        f2b = shutil.which('fail2ban-regex')
        t_f2b = None
        if f2b and os.environ.get('BENCH_F2B', '1') != '0':
            t_f2b, rss_f2b, out = run_timed([f2b, log, SEED_REGEX])
            m = re.search(r'Lines: (\d+) lines, (\d+) ignored, (\d+) matched', out)
            f2b_matched = int(m.group(3)) if m else -1

        print()
        fmt = '%-32s %9s %9s %10s %10s'
        print(fmt % ('tool', 'cpu s', 'wall s', 'maxRSS MB', 'matched'))
        row = '%-32s %9.3f %9.3f %10.1f %10d'
        print(row % ('dbmail_tap test dbmail-imap', t_tap[1], t_tap[0], rss_tap / 1024,
                     tap_matched))
        print(row % ('dbmail_tap test <seed regex>', t_tapre[1], t_tapre[0], rss_tapre / 1024,
                     tapre_matched))
        print(row % ('LC_ALL=C grep -cE', t_grep[1], t_grep[0], rss_grep / 1024, grep_count))
        if t_f2b is not None:
            print(row % ('fail2ban-regex <seed regex>', t_f2b[1], t_f2b[0], rss_f2b / 1024,
                         f2b_matched))
        print()
        # ratios on CPU time; a 1 ms floor keeps a zero from dividing
        cpu = lambda t: max(t[1], 0.001)
        ok = True

        def verdict(name, good, text):
            nonlocal ok
            ok = ok and good
            print('%-4s %s: %s' % ('PASS' if good else 'FAIL', name, text))

        verdict('lines', tap_lines == nlines, '%d of %d counted' % (tap_lines, nlines))
        verdict('matches', tap_matched == expected == grep_count == tapre_matched,
                'dbmail-imap %d, seed regex %d, grep %d, generated %d'
                % (tap_matched, tapre_matched, grep_count, expected))
        verdict('vs grep (filter)', cpu(t_tap) <= 2 * cpu(t_grep),
                'dbmail_tap/grep cpu ratio %.2f (target <= 2; wall %.2f)'
                % (cpu(t_tap) / cpu(t_grep), t_tap[0] / t_grep[0]))
        verdict('vs grep (seed regex)', cpu(t_tapre) <= 2 * cpu(t_grep),
                'dbmail_tap/grep cpu ratio %.2f (target <= 2; wall %.2f)'
                % (cpu(t_tapre) / cpu(t_grep), t_tapre[0] / t_grep[0]))
        if t_f2b is not None:
            verdict('vs fail2ban-regex', cpu(t_f2b) / cpu(t_tap) >= 100,
                    'fail2ban-regex/dbmail_tap cpu ratio %.0fx (target >= 100x; wall %.0fx), '
                    'RSS %.1f MB vs %.1f MB' % (cpu(t_f2b) / cpu(t_tap), t_f2b[0] / t_tap[0],
                                                rss_f2b / 1024, rss_tap / 1024))
        else:
            print('SKIP vs fail2ban-regex: fail2ban-regex not installed')
        os.unlink(log)

        # one log per address distribution, each timed against grep
        print()
        ndistinct = int(os.environ.get('BENCH_DISTINCT', '1000000'))
        pool = noise_pool(rng)
        cases = [(name, nlines, pick, 10) for name, pick in DISTRIBUTIONS]
        cases.append(('%d distinct' % ndistinct, 2 * ndistinct,
                      lambda rng_, k: distinct_addr(k), 2))
        rows = []
        for name, n, pick, every in cases:
            dlog = os.path.join(tmp, 'dist.log')
            t0 = time.perf_counter()
            fails = generate_dist(dlog, n, rng, pool, pick, every)
            gen_s = time.perf_counter() - t0
            run_timed(['cat', dlog])
            t_d, rss_d, out = run_timed([tap, 'test', dlog, 'dbmail-imap'], repeat=3)
            m = re.search(r'Lines:\s+(\d+) read, (\d+) matched', out)
            d_lines, d_matched = int(m.group(1)), int(m.group(2))
            m = re.search(r'Addresses: (\d+) distinct', out)
            d_distinct = int(m.group(1))
            t_g, _, out = run_timed(['grep', '-cE', GREP_REGEX, dlog], env=cenv, repeat=3)
            g_count = int(out.strip() or 0)
            os.unlink(dlog)
            rows.append((name, n, fails, d_distinct, t_d, t_g, rss_d, gen_s,
                         d_lines == n and d_matched == fails == g_count))
        fmt = '%-22s %9s %9s %9s %9s %9s %7s %9s'
        print(fmt % ('addresses', 'lines', 'failures', 'distinct', 'tap cpu', 'grep cpu',
                     'ratio', 'tap MB'))
        for name, n, fails, dd, t_d, t_g, rss_d, gen_s, _ in rows:
            print('%-22s %9d %9d %9d %9.3f %9.3f %7.2f %9.1f'
                  % (name, n, fails, dd, t_d[1], t_g[1], cpu(t_d) / cpu(t_g), rss_d / 1024))
        print()
        for name, n, fails, dd, t_d, t_g, rss_d, gen_s, counts_ok in rows:
            verdict('counts (%s)' % name, counts_ok, '%d failures, %d distinct' % (fails, dd))
            verdict('vs grep (%s)' % name, cpu(t_d) <= 2 * cpu(t_g),
                    'dbmail_tap/grep cpu ratio %.2f (target <= 2; wall %.2f)'
                    % (cpu(t_d) / cpu(t_g), t_d[0] / t_g[0]))
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
