/*
 * Firewall actions: keep the host firewall in step with the live ban set
 * so that IMAP/POP3/Sieve connections from banned addresses are dropped.
 * Driven by the firewall keeper (tap_keeper.c) from the core's follower:
 * single changes are queued and applied in one transaction per batch; a
 * whole set (at start, after a gap or a hand edit) is written while it is
 * read.
 *
 *   none      nothing (the bans still reach Redis and the webmail module)
 *   nftables  its own table "inet mailguard" with one input chain and one
 *             set per address family and prefix length: v4 and v6 for hosts,
 *             v4_N and v6_N for prefixes of N bits (the rule matches the
 *             source masked to N bits), created when a first ban of that
 *             length comes.  Plain sets, so prefixes never overlap inside a
 *             set.  Elements carry timeouts; a permanent ban has none, and
 *             one beyond the kernel's ~49-day limit none either: the tap
 *             removes it when it ends.  A whole set is one `nft -f -`
 *             transaction that replaces the table atomically.
 *   ipfw      table "mailguard" (type addr) and rule TAP_IPFW_RULE denying
 *             TCP to the ports from it; one ipfw command per change (fine
 *             for thousands of bans, slow for a botnet: use nftables), and
 *             the tap ends every ban itself (ipfw has no timeouts).
 *
 * Commands run by fork + execv with argument vectors (nft scripts on stdin
 * are built only from canonical address text and integers); a failed
 * command is logged with its output and the keeper rebuilds the whole set:
 * never fatal.  Leaving the daemon keeps the rules (bans stay enforced;
 * the timeouts still expire them).
 */
#ifndef TAP_FIREWALL_H
#define TAP_FIREWALL_H

#include <stddef.h>
#include <stdint.h>
#include "mg_addr.h"
#include "mg_follow.h"
#include "tap_config.h"

#define TAP_NFT_TABLE  "mailguard"
#define TAP_IPFW_TABLE "mailguard"
#define TAP_IPFW_RULE  "10000"
/* Longest nftables element timeout the kernel takes, in seconds. */
#define TAP_NFT_TIMEOUT_MAX 4294967

typedef struct tap_fw tap_fw_t;

/* NULL for TAP_BANACTION_NONE or on allocation failure.  The programs are
 * /usr/sbin/nft (or /sbin/nft) and /sbin/ipfw (or /usr/sbin/ipfw), unless
 * DBMAIL_TAP_NFT / DBMAIL_TAP_IPFW name another absolute path. */
tap_fw_t *tap_fw_new(tap_banaction_t action, const uint16_t *ports, size_t nports);
void tap_fw_free(tap_fw_t *fw);

/* Queue one change (now: Unix seconds, for the timeout); during a
 * replacement it also goes into the new set. */
void tap_fw_ban(tap_fw_t *fw, const mg_addr_t *key, int64_t expiry, int64_t now);
void tap_fw_unban(tap_fw_t *fw, const mg_addr_t *key);

/* Apply the queue, and end the bans the firewall cannot time out itself.
 * 0, or -1 when a command failed (logged): rebuild the whole set then. */
int tap_fw_flush(tap_fw_t *fw, int64_t now);

/*
 * Replace the whole set: begin, pages, then commit (the firewall switches
 * at once) or abort (nothing changes).  merge: keep what the firewall
 * holds and only add (Redis lost its data: never open the door).  0, or
 * -1 (logged).
 */
int tap_fw_replace_begin(tap_fw_t *fw, int merge, int64_t now);
int tap_fw_replace_add(tap_fw_t *fw, const mg_ban_t *bans, size_t n, int64_t now);
int tap_fw_replace_commit(tap_fw_t *fw);
void tap_fw_replace_abort(tap_fw_t *fw);

/* Bans the tap ends itself (for the status line and tests). */
size_t tap_fw_timed(const tap_fw_t *fw);

#endif
