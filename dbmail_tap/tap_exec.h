/*
 * Running the firewall's programs: fork + execv with an argument vector,
 * never a shell.  Input goes on the program's stdin; what it prints
 * (stdout and stderr) comes back for the log.
 */
#ifndef TAP_EXEC_H
#define TAP_EXEC_H

#include <stddef.h>

/* Run argv[0] (absolute) with argv, feeding in[0..inlen) on stdin; output
 * goes to out (NUL-terminated, truncated).  Returns the exit status, or
 * -1 when it could not run or was killed after timeout_ms. */
int tap_exec(const char *const argv[], const char *in, size_t inlen, char *out, size_t outlen,
             int timeout_ms);

/*
 * The same with stdin fed piece by piece (an nftables transaction of a
 * million elements is written as the ban set is read, never held whole).
 * The program's output goes to an anonymous file, so it can never block
 * on a full pipe while we write.
 */
typedef struct tap_spawn tap_spawn_t;

/* NULL with the reason in err when it cannot be started. */
tap_spawn_t *tap_spawn(const char *const argv[], char *err, size_t errlen);
/* Write all of buf to its stdin, waiting at most timeout_ms: 0, or -1
 * (it died, or did not read). */
int tap_spawn_write(tap_spawn_t *sp, const char *buf, size_t len, int timeout_ms);
/* Close its stdin and wait at most timeout_ms for it to end: its exit
 * status (-1 if killed or not run), output in out.  Frees sp. */
int tap_spawn_finish(tap_spawn_t *sp, char *out, size_t outlen, int timeout_ms);
/* Kill it and reap it (an abandoned transaction commits nothing).  Frees sp. */
void tap_spawn_kill(tap_spawn_t *sp);

#endif
