/*
 * Firewall actions: keep the host firewall in step with the live ban set
 * so that IMAP/POP3/Sieve connections from banned addresses are dropped.
 *
 *   none      nothing (the bans still reach Redis and the webmail module)
 *   nftables  its own table "inet mailguard": sets v4 and v6 (hosts) and
 *             v4net and v6net (prefixes, "flags interval"), all with
 *             per-element timeouts (permanent bans, and bans beyond the
 *             kernel's ~49-day timeout limit, have none and are removed by
 *             the tap when they end), and one input chain dropping TCP to
 *             the configured ports from those sets.  Changes are one
 *             `nft -f -` transaction each; a full rebuild replaces the
 *             table atomically.
 *   ipfw      table "mailguard" (type addr) and rule TAP_IPFW_RULE denying
 *             TCP to the ports from it; one ipfw command per change.
 *
 * Commands run by fork + execv with argument vectors (scripts on stdin are
 * built only from canonical address text and integers); a failed command
 * is logged with its output and the next sync rebuilds: never fatal.
 * Leaving the daemon keeps the rules (bans stay enforced; the timeouts
 * still expire them).
 */
#ifndef TAP_FIREWALL_H
#define TAP_FIREWALL_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "tap_config.h"

#define TAP_NFT_TABLE "mailguard"
#define TAP_IPFW_TABLE "mailguard"
#define TAP_IPFW_RULE "10000"
/* Longest nftables element timeout the kernel takes, in seconds. */
#define TAP_NFT_TIMEOUT_MAX 4294967

typedef struct tap_fw_ban {
    mg_addr_t key;
    int64_t expiry;     /* Unix seconds, MG_EXPIRY_NEVER = permanent */
} tap_fw_ban_t;

/* The live bans read with mg_store_list(st, now, tap_fw_banlist_add, &list,
 * ...): a growing array (start it zeroed, free v when done, set n = 0 to
 * read again into the same storage). */
typedef struct tap_fw_banlist {
    tap_fw_ban_t *v;
    size_t n, cap;
} tap_fw_banlist_t;

/* mg_store_ban_fn appending to the tap_fw_banlist_t baton; -1 when out of
 * memory (the walk stops). */
int tap_fw_banlist_add(void *baton, const mg_addr_t *key, int64_t expiry);

typedef struct tap_fw tap_fw_t;

/* NULL for TAP_BANACTION_NONE or on allocation failure.  The programs are
 * /usr/sbin/nft (or /sbin/nft) and /sbin/ipfw (or /usr/sbin/ipfw), unless
 * DBMAIL_TAP_NFT / DBMAIL_TAP_IPFW name another absolute path. */
tap_fw_t *tap_fw_new(tap_banaction_t action, const uint16_t *ports, size_t nports);
void tap_fw_free(tap_fw_t *fw);

/* Make the firewall hold exactly bans[0..n) (any order, duplicates
 * allowed); now in Unix seconds.  0, or -1 when a command failed (logged;
 * the next call rebuilds everything). */
int tap_fw_sync(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n, int64_t now);

/* Apply events at once: bans to add or extend, keys to remove. */
int tap_fw_update(tap_fw_t *fw, const tap_fw_ban_t *bans, size_t n,
                  const mg_addr_t *unbans, size_t nu, int64_t now);

/* Run argv[0] (absolute) with argv, feeding in[0..inlen) on stdin; output
 * goes to out (NUL-terminated, truncated).  Returns the exit status, or
 * -1 when it could not run or was killed after timeout_ms. */
int tap_fw_exec(const char *const argv[], const char *in, size_t inlen,
                char *out, size_t outlen, int timeout_ms);

#endif
