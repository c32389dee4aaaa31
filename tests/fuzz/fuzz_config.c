/*
 * Fuzz target for the configuration parser: any input is either a
 * configuration or one error naming the file and a line, never a crash or
 * a leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_config_t *cfg = NULL;
    char err[TAP_CONFIG_ERRLEN];

    err[0] = '\0';
    if (tap_config_parse((const char *)data, size, "fuzz.conf", &cfg, err, sizeof(err)) == 0) {
        if (cfg == NULL)
            abort();
        for (size_t i = 0; i < cfg->njails; i++) {
            const tap_jail_t *j = &cfg->jails[i];
            if (j->matcher == NULL || j->ignoreip == NULL || j->policy.maxretry < 1
                || j->ipv6prefix < 1 || j->ipv6prefix > 128)
                abort();
            if (j->enabled && (j->nlogpaths == 0 || tap_matcher_count(j->matcher) == 0))
                abort();
            if (tap_config_jail(cfg, j->name) == NULL)
                abort();
        }
        if (cfg->nports == 0)
            abort();
        tap_config_free(cfg);
    } else {
        if (cfg != NULL || strncmp(err, "fuzz.conf:", 10) != 0)
            abort();
    }
    return 0;
}
