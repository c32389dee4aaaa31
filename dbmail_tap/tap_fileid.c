/*
 * Naming followed files across restarts; see tap_fileid.h.
 */
#include "tap_fileid.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tap_log.h"

#define HASH_PREFIX 4096

int tap_fileid_first_hash(int fd, uint64_t *hash)
{
    char buf[HASH_PREFIX];
    ssize_t n;
    size_t len;
    const char *nl;
    uint64_t h = 1469598103934665603ULL;

    do {
        n = pread(fd, buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        return -1;
    }
    nl = memchr(buf, '\n', (size_t)n);
    if (nl != NULL) {
        len = (size_t)(nl - buf) + 1;
    }
    else if ((size_t)n == sizeof(buf)) {
        len = sizeof(buf);
    }
    else {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)buf[i];
        h *= 1099511628211ULL;
    }
    *hash = h;
    return 0;
}

uint64_t tap_fileid_identity(uint64_t dev, uint64_t ino, uint64_t hash, int has_hash,
                             uint32_t epoch)
{
    uint64_t h = has_hash ? hash : 0;

    h ^= (dev * 0x9e3779b97f4a7c15ULL) + (ino << 1);
    h += (uint64_t)epoch * 0xd6e8feb86659fd93ULL;
    /* splitmix64 finaliser: identities differ in all bits, not in a few */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h != 0 ? h : 1;
}

int64_t tap_fileid_start(int fd, const struct stat *st, const tap_follow_pos_t *saved,
                         int from_end, uint32_t *epoch, const char **how)
{
    *epoch = 0;
    if (saved != NULL) {
        uint64_t h = 0;
        int same = !saved->has_hash || (tap_fileid_first_hash(fd, &h) == 0 && h == saved->hash);
        if ((uint64_t)st->st_ino == saved->ino && same && st->st_size >= saved->off) {
            *how = "resuming";
            *epoch = saved->epoch;
            return saved->off;
        }
        if ((uint64_t)st->st_ino == saved->ino) {
            *epoch = saved->epoch + 1;
        }
        *how = "replaced while stopped: from the start";
        return 0;
    }
    if (from_end) {
        *how = "never seen: from its end";
        return st->st_size;
    }
    *how = "new file: from the start";
    return 0;
}

/* ---- files rotated away ---- */

static void drop(tap_rotated_t *r, unsigned i)
{
    memmove(&r->id[i], &r->id[i + 1], (r->n - i - 1) * sizeof(r->id[0]));
    memmove(&r->gen[i], &r->gen[i + 1], (r->n - i - 1) * sizeof(r->gen[0]));
    r->n--;
}

void tap_rotated_remember(tap_rotated_t *r, const tap_follow_pos_t *id, uint32_t gen)
{
    if (r->n == TAP_FOLLOW_ROTATED) {
        drop(r, 0);
    }
    r->id[r->n] = *id;
    r->id[r->n].off = 0;
    r->gen[r->n++] = gen;
}

void tap_rotated_forget(tap_rotated_t *r, uint32_t gen)
{
    for (unsigned i = 0; i < r->n; i++) {
        if (r->gen[i] == gen) {
            drop(r, i);
            return;
        }
    }
}

unsigned tap_rotated_list(const tap_rotated_t *r, tap_follow_pos_t *pos, uint32_t *gen,
                          unsigned max)
{
    unsigned n = 0;

    for (; n < r->n && n < max; n++) {
        pos[n] = r->id[n];
        gen[n] = r->gen[n];
    }
    return n;
}

int tap_rotated_add(tap_rotated_t *r, const tap_follow_pos_t *pos, int queued)
{
    /* the statefile's lines get TAP_FOLLOW_ROTATED places, the saved
     * position of the path the one after them */
    if (r->nresume >= TAP_FOLLOW_ROTATED + !queued) {
        return -1;
    }
    r->resume[r->nresume] = *pos;
    r->queued[r->nresume++] = queued;
    r->successor = 1;
    return 0;
}

/* Open the file of dir that has pos's inode and first line and is at
 * least pos->off long (not base: that is the path's file).  Its
 * descriptor, its name in name, or -1. */
static int open_by_inode(const char *dir, const char *base, const tap_follow_pos_t *pos,
                         struct stat *st, char *name, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int fd = -1;

    if (d == NULL) {
        return -1;
    }
    while (fd < 0 && (de = readdir(d)) != NULL) {
        uint64_t h;
        if ((de->d_type != DT_REG && de->d_type != DT_UNKNOWN) || strcmp(de->d_name, base) == 0
            || fstatat(dirfd(d), de->d_name, st, AT_SYMLINK_NOFOLLOW) != 0
            || !S_ISREG(st->st_mode) || (uint64_t)st->st_ino != pos->ino) {
            continue;
        }
        fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            continue;
        }
        /* the very file, not one given its inode since */
        if (fstat(fd, st) != 0 || (uint64_t)st->st_ino != pos->ino || st->st_size < pos->off
            || (pos->has_hash && (tap_fileid_first_hash(fd, &h) != 0 || h != pos->hash))) {
            close(fd);
            fd = -1;
            continue;
        }
        snprintf(name, len, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    return fd;
}

int tap_rotated_next(tap_rotated_t *r, const char *path, const char *dir, const char *base,
                     tap_follow_pos_t *pos, struct stat *st)
{
    while (r->next < r->nresume) {
        char name[PATH_MAX + 256];
        unsigned i = r->next++;
        int fd = open_by_inode(dir, base, &r->resume[i], st, name, sizeof(name));

        if (fd < 0) {
            if (r->queued[i]) {
                tap_warn("MG0618: %s: the file rotated away from it (inode %llu) is gone: the "
                         "failures read from it and not stored in Redis are lost",
                         path, (unsigned long long)r->resume[i].ino);
            }
            continue;
        }
        *pos = r->resume[i];
        if (lseek(fd, (off_t)pos->off, SEEK_SET) != (off_t)pos->off) {
            /* from the start: what Redis has comes back as duplicates */
            lseek(fd, 0, SEEK_SET);
            pos->off = 0;
        }
        tap_info("MG0610: following %s (rotated away from %s, to its end, offset %lld)", name,
                 path, (long long)pos->off);
        return fd;
    }
    r->nresume = r->next = 0;
    return -1;
}
