/*
 * Shared memory: the ban mirror, the local failure windows (with the
 * queue of bans waiting for Redis), counters and the Redis breaker state,
 * in one segment created before the children fork.
 *
 * The segment and the global writer mutex live in the process pool, not
 * in pconf, so a restart (graceful or not) keeps what the previous
 * generation knew: the new generation re-attaches the same segment when
 * its layout still fits, or copies every live ban (and pending ban) into a
 * resized one.  Keeping the mutex too means old and new children, which
 * may run side by side during a graceful restart, still exclude each
 * other when they write the shared table.
 *
 * Readers (every request) never lock; writers take the global mutex, and
 * never hold it across network I/O.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "util_mutex.h"
#include "apr_global_mutex.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_general.h"

#include "mg_shm.h"
#include "mg_config.h"

APLOG_USE_MODULE(mailguard);

#define MG_SHM_MAGIC   0x4d475348u /* "MGSH" */
#define MG_SHM_VERSION 3u          /* 2: change-log position; 3: failure queue, token */
#define MG_SHM_KEY     "mod_mailguard_shm"
#define MG_SHM_ALIGN   64
/* Local windows: addresses counted while Redis is away (LRU beyond
 * this), and bans waiting to be written to Redis. */
#define MG_WIN_ENTRIES 8192
#define MG_WIN_QUEUE   4096
/* Failures waiting for Redis (a timeout, an outage): at a few hundred a
 * second, a minute's worth. */
#define MG_FAIL_QUEUE 16384

typedef struct mg_shm_hdr {
    apr_uint32_t magic;
    apr_uint32_t version;
    apr_uint32_t capacity;
    apr_uint32_t win_entries;
    apr_uint32_t win_queue;
    apr_uint32_t pad;
    apr_uint64_t bt_off, bt_size;
    apr_uint64_t lw_off, lw_size;
    apr_uint64_t fq_off, fq_size;
    apr_uint64_t rq_off; /* recently counted failures: same size as fq */
    apr_uint32_t fq_cap;
    apr_uint32_t pad2;
    apr_uint64_t token; /* random: this server's failure identities */
    apr_uint64_t total;
    mg_stats_t stats;
    mg_shm_pos_t pos;
} mg_shm_hdr_t;

/* What survives a restart: kept as userdata of the process pool. */
typedef struct mg_shm_keep {
    apr_shm_t *shm;
    apr_global_mutex_t *mutex;
    const char *lockfile;
} mg_shm_keep_t;

/* This process's view, set in post_config (inherited by fork). */
static struct {
    mg_shm_hdr_t *hdr;
    mg_bantable_t *bt;
    mg_localwin_t *lw;
    mg_fqueue_t *fq;
    mg_fqueue_t *rq;
    apr_global_mutex_t *mutex;
    const char *lockfile;
} mg_g;

static apr_size_t mg_align(apr_size_t n)
{
    return (n + MG_SHM_ALIGN - 1) & ~(apr_size_t)(MG_SHM_ALIGN - 1);
}

static void mg_layout(mg_shm_hdr_t *h, apr_uint32_t capacity)
{
    h->capacity = capacity;
    h->win_entries = MG_WIN_ENTRIES;
    h->win_queue = MG_WIN_QUEUE;
    h->bt_off = mg_align(sizeof(mg_shm_hdr_t));
    h->bt_size = mg_align(mg_bantable_size(capacity));
    h->lw_off = h->bt_off + h->bt_size;
    h->lw_size = mg_align(mg_localwin_size(MG_WIN_ENTRIES, MG_WIN_QUEUE));
    h->fq_cap = MG_FAIL_QUEUE;
    h->fq_off = h->lw_off + h->lw_size;
    h->fq_size = mg_align(mg_fqueue_size(MG_FAIL_QUEUE));
    h->rq_off = h->fq_off + h->fq_size;
    h->total = h->rq_off + h->fq_size;
}

/* The segment's usable base is not cache-line aligned (APR keeps its own
 * header in front); the ban table wants 64-byte alignment, so the layout
 * starts at the first aligned address and the segment has room for it. */
static mg_shm_hdr_t *mg_shm_hdr(apr_shm_t *shm)
{
    apr_uintptr_t p = (apr_uintptr_t)apr_shm_baseaddr_get(shm);

    return (mg_shm_hdr_t *)((p + MG_SHM_ALIGN - 1) & ~(apr_uintptr_t)(MG_SHM_ALIGN - 1));
}

static apr_size_t mg_shm_usable(apr_shm_t *shm)
{
    return apr_shm_size_get(shm)
           - (apr_size_t)((char *)mg_shm_hdr(shm) - (char *)apr_shm_baseaddr_get(shm));
}

static void *mg_at(mg_shm_hdr_t *h, apr_uint64_t off)
{
    return (char *)h + off;
}

static apr_status_t mg_shm_create(apr_shm_t **shm, apr_size_t size, apr_pool_t *pproc)
{
    apr_status_t rv = apr_shm_create(shm, size, NULL, pproc);

    if (rv == APR_ENOTIMPL) {
        /* No anonymous shared memory here: fall back to a named segment. */
        const char *fn = ap_runtime_dir_relative(
            pproc, apr_psprintf(pproc, "mailguard-%" APR_PID_T_FMT ".shm", getpid()));
        apr_shm_remove(fn, pproc);
        rv = apr_shm_create(shm, size, fn, pproc);
    }
    return rv;
}

/* Format a fresh segment; when old is given, carry its live bans,
 * pending bans and counters over (caller holds the writer mutex). */
static int mg_shm_format(mg_shm_hdr_t *h, apr_uint32_t capacity, mg_shm_hdr_t *old)
{
    memset(h, 0, sizeof(*h));
    mg_layout(h, capacity);
    /* The segment is freshly created, hence zero: the table's pages are
     * only touched (and allocated) as bans arrive. */
    if (mg_bantable_init_zeroed(mg_at(h, h->bt_off), (size_t)h->bt_size, capacity) == NULL
        || mg_localwin_init(mg_at(h, h->lw_off), (size_t)h->lw_size, h->win_entries,
                            h->win_queue)
               == NULL
        || mg_fqueue_init(mg_at(h, h->fq_off), (size_t)h->fq_size, h->fq_cap) == NULL
        || mg_fqueue_init(mg_at(h, h->rq_off), (size_t)h->fq_size, h->fq_cap) == NULL) {
        return -1;
    }
    /* Identities of this server's failures start with it: random, so two
     * servers (or two generations) never reuse one. */
    if (apr_generate_random_bytes((unsigned char *)&h->token, sizeof(h->token))
        != APR_SUCCESS) {
        h->token = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 40);
    }
    if (old != NULL && old->magic == MG_SHM_MAGIC && old->version == MG_SHM_VERSION) {
        mg_bantable_t *obt =
            mg_bantable_attach(mg_at(old, old->bt_off), (size_t)old->bt_size, old->capacity);
        mg_localwin_t *olw = mg_localwin_attach(mg_at(old, old->lw_off), (size_t)old->lw_size,
                                                old->win_entries, old->win_queue);
        if (obt != NULL) {
            mg_bantable_copy(mg_at(h, h->bt_off), obt, (int64_t)apr_time_sec(apr_time_now()));
        }
        mg_fqueue_t *ofq =
            mg_fqueue_attach(mg_at(old, old->fq_off), (size_t)old->fq_size, old->fq_cap);
        if (olw != NULL) {
            mg_pending_ban_t pb;
            while (mg_localwin_pop_ban(olw, &pb)) {
                mg_localwin_queue_ban(mg_at(h, h->lw_off), &pb.key, pb.expiry, pb.jail);
            }
        }
        if (ofq != NULL) {
            mg_pending_failure_t pf;
            while (mg_fqueue_pop(ofq, &pf, 1) == 1) {
                mg_fqueue_push(mg_at(h, h->fq_off), &pf);
            }
        }
        h->stats = old->stats;
        /* The position goes with the bans: the mirror holds the same. */
        h->pos = old->pos;
        h->stats.redis_down = 0;
        h->stats.redis_retry_at = 0;
    }
    h->stats.sync_leader = 0;
    h->magic = MG_SHM_MAGIC;
    h->version = MG_SHM_VERSION;
    return 0;
}

/* The kept segment still fits this configuration: re-attach it. */
static int mg_shm_reattach(mg_shm_hdr_t *h, apr_size_t size, apr_uint32_t capacity)
{
    mg_shm_hdr_t want;

    memset(&want, 0, sizeof(want));
    mg_layout(&want, capacity);
    if (h->magic != MG_SHM_MAGIC || h->version != MG_SHM_VERSION || h->capacity != capacity
        || h->total != want.total || size < want.total || h->bt_off != want.bt_off
        || h->lw_off != want.lw_off || h->fq_off != want.fq_off || h->rq_off != want.rq_off) {
        return -1;
    }
    if (mg_bantable_attach(mg_at(h, h->bt_off), (size_t)h->bt_size, capacity) == NULL
        || mg_localwin_attach(mg_at(h, h->lw_off), (size_t)h->lw_size, h->win_entries,
                              h->win_queue)
               == NULL
        || mg_fqueue_attach(mg_at(h, h->fq_off), (size_t)h->fq_size, h->fq_cap) == NULL
        || mg_fqueue_attach(mg_at(h, h->rq_off), (size_t)h->fq_size, h->fq_cap) == NULL) {
        return -1;
    }
    h->stats.sync_leader = 0;
    return 0;
}

apr_status_t mg_shm_pre_config(apr_pool_t *pconf)
{
    return ap_mutex_register(pconf, MG_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
}

apr_status_t mg_shm_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *pproc = s->process->pool;
    apr_uint32_t capacity = mg_srv_table_size(s);
    mg_shm_keep_t *keep = NULL;
    mg_shm_hdr_t want;
    apr_shm_t *fresh = NULL;
    apr_status_t rv;

    (void)pconf;
    memset(&mg_g, 0, sizeof(mg_g));
    apr_pool_userdata_get((void **)&keep, MG_SHM_KEY, pproc);
    if (keep == NULL) {
        keep = apr_pcalloc(pproc, sizeof(*keep));
        apr_pool_userdata_set(keep, MG_SHM_KEY, apr_pool_cleanup_null, pproc);
    }
    if (keep->mutex == NULL) {
        rv = ap_global_mutex_create(&keep->mutex, &keep->lockfile, MG_MUTEX_TYPE, NULL, s,
                                    pproc, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         "MG0001: cannot create the " MG_MUTEX_TYPE " mutex");
            return rv;
        }
    }

    if (keep->shm != NULL) {
        mg_shm_hdr_t *old = mg_shm_hdr(keep->shm);
        if (mg_shm_reattach(old, mg_shm_usable(keep->shm), capacity) == 0) {
            mg_g.hdr = old;
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                         "MG0002: kept the ban mirror of the previous generation "
                         "(%u entries)",
                         (unsigned)mg_bantable_count(mg_at(old, old->bt_off)));
        }
    }
    if (mg_g.hdr == NULL) {
        memset(&want, 0, sizeof(want));
        mg_layout(&want, capacity);
        rv = mg_shm_create(&fresh, (apr_size_t)want.total + MG_SHM_ALIGN, pproc);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         "MG0003: cannot create %lu bytes of shared memory for "
                         "MailGuardBanTableSize %u",
                         (unsigned long)want.total, (unsigned)capacity);
            return rv;
        }
        /* Old children of a graceful restart may still write the old
         * segment: copy under the same mutex they use. */
        rv = apr_global_mutex_lock(keep->mutex);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "MG0004: cannot lock " MG_MUTEX_TYPE);
            apr_shm_destroy(fresh);
            return rv;
        }
        if (mg_shm_format(mg_shm_hdr(fresh), capacity, keep->shm ? mg_shm_hdr(keep->shm) : NULL)
            != 0) {
            apr_global_mutex_unlock(keep->mutex);
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         "MG0005: cannot lay out the ban table in shared memory");
            apr_shm_destroy(fresh);
            return APR_EGENERAL;
        }
        apr_global_mutex_unlock(keep->mutex);
        if (keep->shm != NULL) {
            /* Children of the old generation keep their own mapping. */
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         "MG0006: ban table resized to %u entries; live bans carried over",
                         (unsigned)capacity);
            apr_shm_destroy(keep->shm);
        }
        keep->shm = fresh;
        mg_g.hdr = mg_shm_hdr(fresh);
    }
    mg_g.bt = mg_bantable_attach(mg_at(mg_g.hdr, mg_g.hdr->bt_off), (size_t)mg_g.hdr->bt_size,
                                 capacity);
    mg_g.lw = mg_localwin_attach(mg_at(mg_g.hdr, mg_g.hdr->lw_off), (size_t)mg_g.hdr->lw_size,
                                 mg_g.hdr->win_entries, mg_g.hdr->win_queue);
    mg_g.fq = mg_fqueue_attach(mg_at(mg_g.hdr, mg_g.hdr->fq_off), (size_t)mg_g.hdr->fq_size,
                               mg_g.hdr->fq_cap);
    mg_g.rq = mg_fqueue_attach(mg_at(mg_g.hdr, mg_g.hdr->rq_off), (size_t)mg_g.hdr->fq_size,
                               mg_g.hdr->fq_cap);
    if (mg_g.bt == NULL || mg_g.lw == NULL || mg_g.fq == NULL || mg_g.rq == NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "MG0007: shared memory does not hold a valid ban table");
        return APR_EGENERAL;
    }
    mg_g.mutex = keep->mutex;
    mg_g.lockfile = keep->lockfile;
    return APR_SUCCESS;
}

void mg_shm_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (mg_g.mutex == NULL) {
        return;
    }
    rv = apr_global_mutex_child_init(&mg_g.mutex, mg_g.lockfile, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "MG0008: cannot attach the " MG_MUTEX_TYPE " mutex in the child");
    }
}

mg_bantable_t *mg_shm_bantable(void)
{
    return mg_g.bt;
}

mg_localwin_t *mg_shm_localwin(void)
{
    return mg_g.lw;
}

mg_stats_t *mg_shm_stats(void)
{
    return mg_g.hdr ? &mg_g.hdr->stats : NULL;
}

mg_fqueue_t *mg_shm_fqueue(void)
{
    return mg_g.fq;
}

mg_fqueue_t *mg_shm_recent(void)
{
    return mg_g.rq;
}

apr_uint64_t mg_shm_token(void)
{
    return mg_g.hdr ? mg_g.hdr->token : 0;
}

mg_shm_pos_t *mg_shm_position(void)
{
    return mg_g.hdr ? &mg_g.hdr->pos : NULL;
}

apr_status_t mg_shm_lock(server_rec *s)
{
    apr_status_t rv;

    if (mg_g.mutex == NULL) {
        return APR_ENOLOCK;
    }
    rv = apr_global_mutex_lock(mg_g.mutex);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "MG0009: cannot lock " MG_MUTEX_TYPE);
    }
    return rv;
}

void mg_shm_unlock(server_rec *s)
{
    apr_status_t rv = apr_global_mutex_unlock(mg_g.mutex);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "MG0010: cannot unlock " MG_MUTEX_TYPE);
    }
}

int mg_shm_put_ban(server_rec *s, const mg_addr_t *key, apr_int64_t expiry)
{
    static int warned;
    int rc;

    if (mg_g.bt == NULL || mg_shm_lock(s) != APR_SUCCESS) {
        return -1;
    }
    rc = mg_bantable_put(mg_g.bt, key, expiry);
    mg_shm_unlock(s);
    if (rc < 0) {
        mg_stat_inc(&mg_g.hdr->stats.not_mirrored);
        if (!warned) {
            /* Once per process: a full table under attack must not flood
             * the log. */
            warned = 1;
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "MG0011: ban table full (%u entries): new bans are not "
                         "mirrored; raise MailGuardBanTableSize",
                         (unsigned)mg_bantable_capacity(mg_g.bt));
        }
        return -1;
    }
    return 0;
}

int mg_shm_del_ban(server_rec *s, const mg_addr_t *key)
{
    if (mg_g.bt == NULL || mg_shm_lock(s) != APR_SUCCESS) {
        return -1;
    }
    (void)mg_bantable_del(mg_g.bt, key);
    mg_shm_unlock(s);
    return 0;
}
