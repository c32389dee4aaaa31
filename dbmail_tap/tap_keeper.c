/*
 * The firewall keeper; see tap_keeper.h.
 */
#include "tap_keeper.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mg_follow.h"
#include "tap_firewall.h"
#include "tap_log.h"

/* Longest wait for a change: bounds how long a stop takes. */
#define TAP_KEEPER_WAIT_MS 250
/* Between checks of the change log (a hand edit is seen within twice
 * this). */
#define TAP_KEEPER_CHECK_MS 2500

struct tap_keeper {
    pthread_t thread;
    atomic_int *stop;
    tap_fw_t *fw;
    mg_follow_t *fol;
    const tap_config_t *cfg;
    uint64_t fw_failures; /* keeper thread only */
    /* the stats as of the last step, for other threads: copied once per
     * step under the lock (a step is a wait of up to TAP_KEEPER_WAIT_MS or
     * one batch of changes, so the lock is cheap) */
    pthread_mutex_t lock;
    tap_keeper_stats_t pub;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- the follower's callbacks: queue, or write the new set ---- */

static void k_apply(void *baton, const mg_store_event_t *ev)
{
    tap_keeper_t *k = baton;

    if (ev->is_ban) {
        tap_fw_ban(k->fw, &ev->key, ev->expiry, now_s());
    }
    else {
        tap_fw_unban(k->fw, &ev->key);
    }
}

/* A whole-set write fails at most once (begin, a page or the commit: the
 * follower aborts it then), so each -1 is one failed update. */
static int k_counted(tap_keeper_t *k, int rc)
{
    if (rc != 0) {
        k->fw_failures++;
    }
    return rc;
}

static int k_begin(void *baton, mg_follow_why_t why)
{
    tap_keeper_t *k = baton;

    /* Redis lost its data: keep what the firewall holds, add only. */
    return k_counted(k, tap_fw_replace_begin(k->fw, why == MG_SNAP_LOST, now_s()));
}

static int k_add(void *baton, const mg_ban_t *bans, size_t n)
{
    tap_keeper_t *k = baton;

    return k_counted(k, tap_fw_replace_add(k->fw, bans, n, now_s()));
}

static int k_commit(void *baton)
{
    tap_keeper_t *k = baton;

    return k_counted(k, tap_fw_replace_commit(k->fw));
}

static void k_abort(void *baton)
{
    tap_fw_replace_abort(((tap_keeper_t *)baton)->fw);
}

static void k_note(void *baton, mg_follow_note_t what, const char *detail)
{
    const tap_keeper_t *k = baton;

    switch (what) {
    case MG_NOTE_UP:
        tap_notice("MG0647: firewall keeper in touch with Redis");
        break;
    case MG_NOTE_DOWN:
        tap_error("MG0644: firewall keeper lost Redis (%s): the firewall keeps what it "
                  "has",
                  detail);
        break;
    case MG_NOTE_SNAP_BEGIN:
        tap_info("MG0648: writing the whole ban set to the firewall: %s", detail);
        break;
    case MG_NOTE_SNAP_DONE:
        tap_info("MG0642: firewall holds the ban set: %s", detail);
        break;
    case MG_NOTE_REFUSED:
        tap_warn("MG0649: refused from Redis: %s; only bans of a host or a prefix "
                 "within prefixfloor (/%u, /%u) reach the firewall",
                 detail, k->cfg->floor4, k->cfg->floor6);
        break;
    case MG_NOTE_HAND_EDIT:
        tap_notice("MG0645: the ban set was changed by hand (bare ZADD/ZREM): every "
                   "follower reads it again");
        break;
    }
}

static const mg_follow_ops_t keeper_ops = {
    k_apply, k_begin, k_add, k_commit, k_abort, k_note
};

/* Copy the follower's stats (not thread-safe: this thread's) for others. */
static void publish(tap_keeper_t *k)
{
    const mg_follow_stats_t *fs = mg_follow_stats(k->fol);

    pthread_mutex_lock(&k->lock);
    k->pub.up = fs->up;
    k->pub.in_step = fs->in_step;
    k->pub.snapshots = fs->snapshots;
    k->pub.applied = fs->applied;
    k->pub.refused = fs->refused;
    k->pub.errors = fs->errors;
    k->pub.live = fs->live;
    k->pub.last_check = fs->last_check;
    k->pub.fw_failures = k->fw_failures;
    pthread_mutex_unlock(&k->lock);
}

static void *keeper_main(void *arg)
{
    tap_keeper_t *k = arg;

    tap_info("MG0643: firewall action %s on %zu ports", tap_banaction_name(k->cfg->banaction),
             k->cfg->nports);
    while (!atomic_load(k->stop)) {
        mg_follow_step(k->fol, TAP_KEEPER_WAIT_MS);
        /* one transaction for what this step brought; a failed one means
         * the firewall may differ from the set: write it whole */
        if (k_counted(k, tap_fw_flush(k->fw, now_s())) != 0) {
            mg_follow_rebuild(k->fol);
        }
        publish(k);
    }
    return NULL;
}

void tap_keeper_stats(tap_keeper_t *k, tap_keeper_stats_t *out)
{
    pthread_mutex_lock(&k->lock);
    *out = k->pub;
    pthread_mutex_unlock(&k->lock);
}

tap_keeper_t *tap_keeper_start(const tap_config_t *cfg, const mg_store_cfg_t *store,
                               atomic_int *stop)
{
    tap_keeper_t *k = calloc(1, sizeof(*k));
    mg_follow_cfg_t fc;

    if (k == NULL) {
        goto oom;
    }
    pthread_mutex_init(&k->lock, NULL);
    k->stop = stop;
    k->cfg = cfg;
    k->fw = tap_fw_new(cfg->banaction, cfg->ports, cfg->nports);
    mg_follow_cfg_defaults(&fc);
    fc.store = *store;
    fc.block_ms = TAP_KEEPER_WAIT_MS;
    fc.check_ms = TAP_KEEPER_CHECK_MS;
    fc.min_plen4 = cfg->floor4;
    fc.min_plen6 = cfg->floor6;
    k->fol = k->fw != NULL ? mg_follow_new(&fc, &keeper_ops, k) : NULL;
    if (k->fol == NULL) {
        goto oom;
    }
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
        tap_error("MG0609: cannot start the firewall keeper");
        goto fail;
    }
    return k;
oom:
    tap_error("MG0605: out of memory starting the firewall keeper");
fail:
    if (k != NULL) {
        mg_follow_free(k->fol);
        tap_fw_free(k->fw);
        pthread_mutex_destroy(&k->lock);
        free(k);
    }
    return NULL;
}

void tap_keeper_join(tap_keeper_t *k)
{
    if (k == NULL) {
        return;
    }
    pthread_join(k->thread, NULL);
    mg_follow_free(k->fol);
    tap_fw_free(k->fw);
    pthread_mutex_destroy(&k->lock);
    free(k);
}
