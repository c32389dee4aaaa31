/*
 * Statefile load and atomic save; see tap_state.h.
 */
#include "tap_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_HEADER "# dbmail_tap state: v1|v2|r2 inode offset first-line-hash [epoch] path\n"
#define TMP_INFIX    ".tmp."

/*
 * Remove temporary files a crashed run left next to the statefile
 * ("FILE.tmp.PID" of a process that is gone, or of this very PID, which
 * has written nothing yet).  A live writer's file (another dbmail_tap on
 * the same statefile) is left alone.  Best effort: nothing here is an
 * error, the next save works either way.
 */
static void sweep_stale_temps(const char *file)
{
    char *dcopy = strdup(file), *bcopy = strdup(file);
    DIR *d = NULL;

    if (dcopy == NULL || bcopy == NULL)
        goto end;
    const char *base = basename(bcopy);
    size_t blen = strlen(base);
    d = opendir(dirname(dcopy));
    if (d == NULL)
        goto end;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, base, blen) != 0 || strncmp(n + blen, TMP_INFIX, 5) != 0)
            continue;
        const char *digits = n + blen + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (end == digits || *end != '\0' || errno != 0 || pid <= 0)
            continue;
        if (pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
            (void)unlinkat(dirfd(d), n, 0);
    }
end:
    if (d != NULL)
        closedir(d);
    free(dcopy);
    free(bcopy);
}

static int parse_line(char *line, tap_state_entry_t *e)
{
    char *p = line, *end;
    unsigned long long ino, hash = 0, epoch = 0;
    long long off;
    int has_hash = 0, v2;

    if (strncmp(p, "v1 ", 3) != 0 && strncmp(p, "v2 ", 3) != 0 && strncmp(p, "r2 ", 3) != 0) {
        return -1;
    }
    v2 = p[1] == '2';
    e->rotated = p[0] == 'r';
    p += 3;
    errno = 0;
    ino = strtoull(p, &end, 10);
    if (end == p || *end != ' ' || errno != 0) {
        return -1;
    }
    p = end + 1;
    off = strtoll(p, &end, 10);
    if (end == p || *end != ' ' || errno != 0 || off < 0) {
        return -1;
    }
    p = end + 1;
    if (p[0] == '-' && p[1] == ' ') {
        p += 2;
    }
    else {
        hash = strtoull(p, &end, 16);
        if (end == p || *end != ' ' || errno != 0) {
            return -1;
        }
        has_hash = 1;
        p = end + 1;
    }
    if (v2) {
        epoch = strtoull(p, &end, 10);
        if (end == p || *end != ' ' || errno != 0 || epoch > UINT32_MAX) {
            return -1;
        }
        p = end + 1;
    }
    if (*p != '/') {
        return -1; /* paths are stored absolute */
    }
    e->path = strdup(p);
    if (e->path == NULL) {
        return -1;
    }
    e->pos.ino = ino;
    e->pos.off = off;
    e->pos.hash = hash;
    e->pos.has_hash = has_hash;
    e->pos.epoch = (uint32_t)epoch;
    return 0;
}

int tap_state_load(const char *file, tap_state_t *st, unsigned *bad, char *err, size_t errlen)
{
    FILE *fp;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;

    st->v = NULL;
    st->n = 0;
    *bad = 0;
    sweep_stale_temps(file);
    fp = fopen(file, "re");
    if (fp == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) >= 0) {
        tap_state_entry_t e;
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        }
        if (len == 0 || line[0] == '#') {
            continue;
        }
        if (parse_line(line, &e) != 0) {
            (*bad)++;
            continue;
        }
        {
            tap_state_entry_t *nv = realloc(st->v, (st->n + 1) * sizeof(*nv));
            if (nv == NULL) {
                free(e.path);
                (*bad)++;
                continue;
            }
            st->v = nv;
            st->v[st->n++] = e;
        }
    }
    free(line);
    fclose(fp);
    return 0;
}

const tap_follow_pos_t *tap_state_find(const tap_state_t *st, const char *path)
{
    for (size_t i = 0; i < st->n; i++) {
        if (!st->v[i].rotated && strcmp(st->v[i].path, path) == 0) {
            return &st->v[i].pos;
        }
    }
    return NULL;
}

void tap_state_free(tap_state_t *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->v[i].path);
    }
    free(st->v);
    st->v = NULL;
    st->n = 0;
}

int tap_state_save(const char *file, const tap_state_entry_t *v, size_t n, char *err,
                   size_t errlen)
{
    char tmp[4096];
    FILE *fp;
    int fd, rc = -1;

    if (snprintf(tmp, sizeof(tmp), "%s" TMP_INFIX "%ld", file, (long)getpid())
        >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "statefile path too long");
        return -1;
    }
    /* A new file or nothing: never through a symlink planted at the
     * temporary name, never into someone else's file.  What sits there
     * already is a leftover of a crash with this PID (or planted): unlink
     * removes the name, not what a symlink points to, and the second
     * O_EXCL open fails rather than follow anything that reappears. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    fputs(STATE_HEADER, fp);
    for (size_t i = 0; i < n; i++) {
        char hash[20], epoch[16];
        /* A path with a newline cannot be stored in a line format; such a
         * file simply starts at its end after a restart. */
        if (v[i].path == NULL || strchr(v[i].path, '\n') != NULL) {
            continue;
        }
        if (v[i].pos.has_hash) {
            snprintf(hash, sizeof(hash), "%016" PRIx64, v[i].pos.hash);
        }
        else {
            snprintf(hash, sizeof(hash), "-");
        }
        /* v1 while the file was never truncated: the line an earlier
         * version reads, should the daemon be downgraded */
        if (v[i].pos.epoch == 0 && !v[i].rotated) {
            fprintf(fp, "v1 %" PRIu64 " %" PRId64 " %s %s\n", v[i].pos.ino, v[i].pos.off, hash,
                    v[i].path);
        }
        else {
            snprintf(epoch, sizeof(epoch), "%" PRIu32, v[i].pos.epoch);
            fprintf(fp, "%s %" PRIu64 " %" PRId64 " %s %s %s\n", v[i].rotated ? "r2" : "v2",
                    v[i].pos.ino, v[i].pos.off, hash, epoch, v[i].path);
        }
    }
    if (fflush(fp) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        fclose(fp);
        unlink(tmp);
        return -1;
    }
    if (fclose(fp) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, file) != 0) {
        snprintf(err, errlen, "rename %s: %s", file, strerror(errno));
        unlink(tmp);
        goto end;
    }
    rc = 0;
end:
    return rc;
}
