/*
 * Log following; see tap_follow.h.
 */
#include "tap_follow.h"
#include "tap_fileid.h"
#include "tap_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE       65536      /* == TAP_FOLLOW_MAX_LINE: see chunk() */
#define DRAIN_BUDGET    (8u << 20) /* bytes per file per turn: keep signals prompt */
#define POLL_MS_INOTIFY 1000
#define POLL_MS_PLAIN   250

#define FILE_EVENTS (IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
#define DIR_EVENTS  (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB)

/* One open file: the current one, or the previous one during the grace. */
typedef struct src {
    int fd;
    dev_t dev;
    ino_t ino;
    int64_t off;        /* read position */
    int64_t line_start; /* start of the partial (or skipped) line */
    char *line;         /* partial line, up to TAP_FOLLOW_MAX_LINE */
    size_t plen, pcap;
    int skipping; /* inside an over-long line */
    uint32_t gen;
    uint32_t epoch; /* truncations seen: part of the identity */
    uint64_t hash;
    int has_hash;
    int wd;
} src_t;

typedef struct tfile {
    char *path;
    char *dir;
    const char *base;
    src_t cur;
    src_t prev;
    int64_t prev_until_ms;
    int wd_dir;
    int seen; /* opened at least once in this run */
    int missing_logged;
    int have_saved;
    tap_follow_pos_t saved;
    int pending;       /* budget ran out: more to read */
    tap_rotated_t rot; /* files rotated away (tap_fileid.h) */
} tfile_t;

struct tap_follow {
    tap_follow_lines_fn fn;
    void *baton;
    int ifd;
    tfile_t *files;
    unsigned n, cap;
    char *rbuf;
    uint64_t skipped, changes;
    int64_t next_tick_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void src_init(src_t *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->wd = -1;
}

static void src_close(tap_follow_t *f, src_t *s)
{
    if (s->wd >= 0 && f->ifd >= 0) {
        /* The same inode may be watched through the other slot. */
        inotify_rm_watch(f->ifd, s->wd);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    free(s->line);
    src_init(s);
}

static void src_reset_lines(src_t *s)
{
    s->plen = 0;
    s->skipping = 0;
    s->line_start = s->off;
}

tap_follow_t *tap_follow_new(tap_follow_lines_fn fn, void *baton, int use_inotify)
{
    tap_follow_t *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->fn = fn;
    f->baton = baton;
    f->ifd = -1;
    if (use_inotify) {
        f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (f->ifd < 0) {
            tap_warn("MG0615: inotify unavailable (%s): polling every %d ms", strerror(errno),
                     POLL_MS_PLAIN);
        }
    }
    f->rbuf = malloc(READ_SIZE);
    if (f->rbuf == NULL) {
        tap_follow_free(f);
        return NULL;
    }
    return f;
}

void tap_follow_free(tap_follow_t *f)
{
    if (f == NULL) {
        return;
    }
    for (unsigned i = 0; i < f->n; i++) {
        src_close(f, &f->files[i].prev);
        src_close(f, &f->files[i].cur);
        free(f->files[i].path);
        free(f->files[i].dir);
    }
    if (f->ifd >= 0) {
        close(f->ifd);
    }
    free(f->files);
    free(f->rbuf);
    free(f);
}

static void add_dir_watch(tap_follow_t *f, tfile_t *t)
{
    if (f->ifd >= 0 && t->wd_dir < 0) {
        t->wd_dir = inotify_add_watch(f->ifd, t->dir, DIR_EVENTS);
    }
}

int tap_follow_add(tap_follow_t *f, const char *path, const tap_follow_pos_t *saved)
{
    tfile_t *t;
    char *slash;

    if (f->n == f->cap) {
        unsigned ncap = f->cap ? f->cap * 2 : 4;
        tfile_t *nf = realloc(f->files, ncap * sizeof(*nf));
        if (nf == NULL) {
            return -1;
        }
        f->files = nf;
        f->cap = ncap;
    }
    t = &f->files[f->n];
    memset(t, 0, sizeof(*t));
    src_init(&t->cur);
    src_init(&t->prev);
    t->wd_dir = -1;
    t->path = strdup(path);
    t->dir = strdup(path);
    if (t->path == NULL || t->dir == NULL) {
        free(t->path);
        free(t->dir);
        return -1;
    }
    slash = strrchr(t->dir, '/');
    if (slash == NULL) {
        free(t->dir);
        t->dir = strdup(".");
        t->base = t->path;
        if (t->dir == NULL) {
            free(t->path);
            return -1;
        }
    }
    else {
        t->base = t->path + (slash - t->dir) + 1;
        if (slash == t->dir) {
            slash[1] = '\0';
        }
        else {
            slash[0] = '\0';
        }
    }
    if (saved != NULL) {
        t->have_saved = 1;
        t->saved = *saved;
    }
    return (int)f->n++;
}

/* Append to the partial line, or start skipping when it grows too long. */
static void keep_partial(tap_follow_t *f, src_t *s, const char *p, size_t len)
{
    if (s->skipping) {
        return;
    }
    if (s->plen + len > TAP_FOLLOW_MAX_LINE) {
        s->skipping = 1;
        s->plen = 0;
        (void)f;
        return;
    }
    if (s->plen + len > s->pcap) {
        size_t ncap = s->pcap ? s->pcap : 256;
        char *nl;
        while (ncap < s->plen + len) {
            ncap *= 2;
        }
        if (ncap > TAP_FOLLOW_MAX_LINE) {
            ncap = TAP_FOLLOW_MAX_LINE;
        }
        nl = realloc(s->line, ncap);
        if (nl == NULL) {
            /* Out of memory: lose this one line rather than the daemon. */
            s->skipping = 1;
            s->plen = 0;
            return;
        }
        s->line = nl;
        s->pcap = ncap;
    }
    memcpy(s->line + s->plen, p, len);
    s->plen += len;
}

static void skipped_line(tap_follow_t *f, tfile_t *t)
{
    f->skipped++;
    tap_warn("MG0614: %s: skipped a line longer than %d bytes (%llu so far)", t->path,
             TAP_FOLLOW_MAX_LINE, (unsigned long long)f->skipped);
}

/*
 * One read chunk.  The chunk is never longer than the longest accepted
 * line, so a line lying wholly inside it is short enough; only a line
 * that spans chunks can be too long, and keep_partial() catches it.
 */
static void chunk(tap_follow_t *f, tfile_t *t, src_t *s, unsigned idx, const char *p, size_t n)
{
    size_t pos = 0;
    const char *nl;

    if (s->plen > 0 || s->skipping) {
        nl = memchr(p, '\n', n);
        if (nl == NULL) {
            keep_partial(f, s, p, n);
            s->off += (int64_t)n;
            return;
        }
        pos = (size_t)(nl - p) + 1;
        if (!s->skipping) {
            keep_partial(f, s, p, pos);
        }
        if (s->skipping) {
            skipped_line(f, t);
        }
        else {
            f->fn(f->baton, idx, s->gen, s->line, s->plen, s->line_start);
        }
        s->plen = 0;
        s->skipping = 0;
        s->line_start = s->off + (int64_t)pos;
    }
    if (pos < n) {
        nl = memrchr(p + pos, '\n', n - pos);
        if (nl != NULL) {
            size_t end = (size_t)(nl - p) + 1;
            f->fn(f->baton, idx, s->gen, p + pos, end - pos, s->off + (int64_t)pos);
            pos = end;
            s->line_start = s->off + (int64_t)pos;
        }
        if (pos < n) {
            keep_partial(f, s, p + pos, n - pos);
        }
    }
    s->off += (int64_t)n;
}

/* Read what is there, up to budget bytes (0 = everything).  1 when the
 * budget ran out with data left. */
static int drain(tap_follow_t *f, tfile_t *t, src_t *s, unsigned idx, size_t budget)
{
    size_t done = 0;

    if (s->fd < 0) {
        return 0;
    }
    for (;;) {
        ssize_t n = read(s->fd, f->rbuf, READ_SIZE);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n < 0) {
                tap_warn("MG0616: %s: read: %s", t->path, strerror(errno));
            }
            return 0;
        }
        chunk(f, t, s, idx, f->rbuf, (size_t)n);
        f->changes++;
        done += (size_t)n;
        if (budget != 0 && done >= budget) {
            return 1;
        }
    }
}

static int open_src(tap_follow_t *f, tfile_t *t, unsigned idx, int at_start)
{
    src_t *s = &t->cur;
    struct stat st;
    const char *how = "";
    int64_t off;
    int fd;

    fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (!t->missing_logged) {
            tap_notice("MG0611: %s: %s; waiting for it to appear", t->path, strerror(errno));
            t->missing_logged = 1;
        }
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (!t->missing_logged) {
            tap_warn("MG0617: %s is not a regular file; waiting", t->path);
            t->missing_logged = 1;
        }
        close(fd);
        return -1;
    }
    {
        uint32_t gen = s->gen + 1;
        src_init(s);
        s->gen = gen;
    }
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if (!at_start && !t->seen && !t->have_saved) {
        /* appeared after start: everything in it is new */
        t->missing_logged = 1;
    }
    off = tap_fileid_start(fd, &st, t->have_saved && !t->seen ? &t->saved : NULL,
                           !t->seen && !t->have_saved && !t->rot.successor
                               && t->missing_logged == 0,
                           &s->epoch, &how);
    if (off > 0 && lseek(fd, (off_t)off, SEEK_SET) < 0) {
        off = 0;
    }
    s->off = off;
    s->line_start = off;
    s->has_hash = tap_fileid_first_hash(fd, &s->hash) == 0;
    if (f->ifd >= 0) {
        s->wd = inotify_add_watch(f->ifd, t->path, FILE_EVENTS);
    }
    add_dir_watch(f, t);
    tap_info("MG0610: following %s (%s, offset %lld)", t->path, how, (long long)off);
    t->seen = 1;
    t->missing_logged = 0;
    f->changes++;
    (void)idx;
    return 0;
}

static void truncated(tap_follow_t *f, tfile_t *t, src_t *s, const char *why)
{
    tap_notice("MG0613: %s %s: reading from the start", t->path, why);
    lseek(s->fd, 0, SEEK_SET);
    s->off = 0;
    src_reset_lines(s);
    s->gen++;
    /* the new content may open with the old one's first line: the epoch
     * tells their lines apart (tap_fileid_identity) */
    s->epoch++;
    s->has_hash = tap_fileid_first_hash(s->fd, &s->hash) == 0;
    f->changes++;
}

/* A generation rotated away keeps its identity: while failures of its
 * lines wait for Redis, the statefile must be able to name the file. */
static void remember_rotated(tfile_t *t, const src_t *s)
{
    tap_follow_pos_t id = { (uint64_t)s->ino, 0, s->hash, s->has_hash, s->epoch };

    tap_rotated_remember(&t->rot, &id, s->gen);
}

/* At start: the files a previous run left rotated away, and the one the
 * statefile named if the path names another now, each read to its end as
 * a generation of its own: a line of it that Redis had is a duplicate. */
static void resume_rotated(tap_follow_t *f, tfile_t *t, unsigned idx)
{
    tap_follow_pos_t pos;
    struct stat st;
    int fd;

    if (t->have_saved && (stat(t->path, &st) != 0 || (uint64_t)st.st_ino != t->saved.ino)) {
        tap_rotated_add(&t->rot, &t->saved, 0);
    }
    while ((fd = tap_rotated_next(&t->rot, t->path, t->dir, t->base, &pos, &st)) >= 0) {
        src_t *s = &t->prev;
        src_init(s);
        s->fd = fd;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->off = s->line_start = pos.off;
        s->hash = pos.hash;
        s->has_hash = pos.has_hash;
        s->epoch = pos.epoch;
        s->gen = ++t->cur.gen;
        remember_rotated(t, s);
        drain(f, t, s, idx, 0);
        src_close(f, s);
    }
}

static void check_file(tap_follow_t *f, unsigned idx, int force_reopen)
{
    tfile_t *t = &f->files[idx];
    src_t *s = &t->cur;
    struct stat st;

    if (t->prev.fd >= 0) {
        drain(f, t, &t->prev, idx, 0);
        if (now_ms() >= t->prev_until_ms || force_reopen) {
            src_close(f, &t->prev);
        }
    }
    if (s->fd < 0) {
        if (open_src(f, t, idx, 0) != 0) {
            add_dir_watch(f, t);
            return;
        }
    }
    /* copytruncate: shorter than what was read, or a new first line */
    if (fstat(s->fd, &st) == 0) {
        if (st.st_size < s->off) {
            truncated(f, t, s, "was truncated");
        }
        else if (s->has_hash) {
            uint64_t h;
            if (tap_fileid_first_hash(s->fd, &h) == 0 && h != s->hash) {
                truncated(f, t, s, "was rewritten (first line changed)");
            }
        }
        else if (st.st_size > 0) {
            s->has_hash = tap_fileid_first_hash(s->fd, &s->hash) == 0;
        }
    }
    t->pending = drain(f, t, s, idx, DRAIN_BUDGET);
    if (t->pending) {
        return;
    }
    /* rename: the path now names another file (or nothing yet) */
    if (stat(t->path, &st) == 0 && (st.st_ino != s->ino || st.st_dev != s->dev)) {
        tap_notice("MG0612: %s was rotated: finishing the old file, reading the new one",
                   t->path);
        drain(f, t, s, idx, 0);
        src_close(f, &t->prev);
        remember_rotated(t, s);
        t->prev = *s;
        t->prev_until_ms = now_ms() + TAP_FOLLOW_GRACE_MS;
        src_init(s);
        s->gen = t->prev.gen;
        if (open_src(f, t, idx, 0) == 0) {
            t->pending = drain(f, t, s, idx, DRAIN_BUDGET);
        }
    }
    else if (force_reopen) {
        /* SIGHUP on an unrotated file: a fresh descriptor, same place */
        int fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd >= 0) {
            if (fstat(fd, &st) == 0 && st.st_ino == s->ino && st.st_dev == s->dev
                && lseek(fd, (off_t)s->off, SEEK_SET) == (off_t)s->off) {
                close(s->fd);
                s->fd = fd;
            }
            else {
                close(fd);
            }
        }
        if (f->ifd >= 0) {
            if (s->wd >= 0) {
                inotify_rm_watch(f->ifd, s->wd);
            }
            s->wd = inotify_add_watch(f->ifd, t->path, FILE_EVENTS);
        }
    }
}

void tap_follow_start(tap_follow_t *f)
{
    for (unsigned i = 0; i < f->n; i++) {
        tfile_t *t = &f->files[i];
        resume_rotated(f, t, i);
        if (open_src(f, t, i, 1) == 0) {
            t->pending = drain(f, t, &t->cur, i, DRAIN_BUDGET);
        }
        else {
            add_dir_watch(f, t);
        }
    }
    f->next_tick_ms = now_ms() + (f->ifd >= 0 ? POLL_MS_INOTIFY : POLL_MS_PLAIN);
}

int tap_follow_fd(const tap_follow_t *f)
{
    return f->ifd;
}

int tap_follow_timeout(const tap_follow_t *f)
{
    int64_t d;

    for (unsigned i = 0; i < f->n; i++) {
        if (f->files[i].pending) {
            return 0;
        }
    }
    d = f->next_tick_ms - now_ms();
    return d < 0 ? 0 : (int)d;
}

void tap_follow_tick(tap_follow_t *f)
{
    int64_t now = now_ms();

    if (now >= f->next_tick_ms) {
        for (unsigned i = 0; i < f->n; i++) {
            check_file(f, i, 0);
        }
        f->next_tick_ms = now + (f->ifd >= 0 ? POLL_MS_INOTIFY : POLL_MS_PLAIN);
        return;
    }
    for (unsigned i = 0; i < f->n; i++) {
        if (f->files[i].pending) {
            check_file(f, i, 0);
        }
    }
}

void tap_follow_events(tap_follow_t *f)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    unsigned char *hit;
    int any = 0;

    if (f->ifd < 0 || f->n == 0) {
        return;
    }
    hit = calloc(f->n, 1);
    if (hit == NULL) {
        return;
    }
    for (;;) {
        ssize_t len = read(f->ifd, buf, sizeof(buf));
        char *p;
        if (len < 0 && errno == EINTR) {
            continue;
        }
        if (len <= 0) {
            break;
        }
        for (p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                memset(hit, 1, f->n);
                continue;
            }
            for (unsigned i = 0; i < f->n; i++) {
                tfile_t *t = &f->files[i];
                if (ev->wd == t->cur.wd || ev->wd == t->prev.wd) {
                    hit[i] = 1;
                }
                else if (ev->wd == t->wd_dir && ev->len > 0 && strcmp(ev->name, t->base) == 0) {
                    hit[i] = 1;
                }
                if (ev->wd == t->wd_dir && (ev->mask & IN_IGNORED)) {
                    t->wd_dir = -1; /* directory gone: re-added on a tick */
                }
            }
            any = 1;
        }
    }
    if (any) {
        for (unsigned i = 0; i < f->n; i++) {
            if (hit[i]) {
                check_file(f, i, 0);
            }
        }
    }
    free(hit);
}

void tap_follow_reopen(tap_follow_t *f)
{
    for (unsigned i = 0; i < f->n; i++) {
        tfile_t *t = &f->files[i];
        if (f->ifd >= 0 && t->wd_dir >= 0) {
            inotify_rm_watch(f->ifd, t->wd_dir);
            t->wd_dir = -1;
        }
        add_dir_watch(f, t);
        check_file(f, i, 1);
    }
}

struct tap_rotated *tap_follow_rotations(tap_follow_t *f, unsigned file)
{
    return file < f->n ? &f->files[file].rot : NULL;
}

void tap_follow_forget_rotated(tap_follow_t *f, unsigned file, uint32_t gen)
{
    if (file < f->n && !(f->files[file].prev.fd >= 0 && f->files[file].prev.gen == gen)) {
        tap_rotated_forget(&f->files[file].rot, gen);
    }
}

unsigned tap_follow_count(const tap_follow_t *f)
{
    return f->n;
}

const char *tap_follow_path(const tap_follow_t *f, unsigned file)
{
    return file < f->n ? f->files[file].path : NULL;
}

int tap_follow_position(const tap_follow_t *f, unsigned file, tap_follow_pos_t *pos,
                        uint32_t *gen)
{
    const src_t *s;

    if (file >= f->n || f->files[file].cur.fd < 0) {
        return 0;
    }
    s = &f->files[file].cur;
    pos->ino = (uint64_t)s->ino;
    pos->off = (s->plen > 0 || s->skipping) ? s->line_start : s->off;
    pos->hash = s->hash;
    pos->has_hash = s->has_hash;
    pos->epoch = s->epoch;
    *gen = s->gen;
    return 1;
}

uint64_t tap_follow_identity(tap_follow_t *f, unsigned file, uint32_t gen)
{
    src_t *s = NULL;

    if (file >= f->n) {
        return 0;
    }
    if (f->files[file].cur.fd >= 0 && f->files[file].cur.gen == gen) {
        s = &f->files[file].cur;
    }
    else if (f->files[file].prev.fd >= 0 && f->files[file].prev.gen == gen) {
        s = &f->files[file].prev;
    }
    if (s == NULL) {
        return 0;
    }
    /* a file opened empty has no first line yet; it has one now that a
     * line of it is handed over */
    if (!s->has_hash) {
        s->has_hash = tap_fileid_first_hash(s->fd, &s->hash) == 0;
    }
    return tap_fileid_identity((uint64_t)s->dev, (uint64_t)s->ino, s->hash, s->has_hash,
                               s->epoch);
}

uint64_t tap_follow_skipped(const tap_follow_t *f)
{
    return f->skipped;
}

uint64_t tap_follow_changes(const tap_follow_t *f)
{
    return f->changes;
}
