/* Helpers shared by the C tests. */
#ifndef RAWSTOR_TESTUTIL_H
#define RAWSTOR_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rawstor.h"

/* Fails the test with the expression and the library's last error. */
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", \
                    __FILE__, __LINE__, #cond, rawstor_last_error());      \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path); /* the library's trash thread may get there first */
    return 0;
}

/* rm -rf, retried: a removed object is freed by a background thread. */
static inline void rm_rf(const char *path)
{
    if (path[0] == '\0')
        return;
    for (int i = 0; i < 500 && access(path, F_OK) == 0; i++) {
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (access(path, F_OK) == 0)
            usleep(10000);
    }
    if (access(path, F_OK) == 0)
        fprintf(stderr, "warning: cannot remove %s\n", path);
}

#endif
