/* Test helper: swap pairs of names back and forth, as an attacker racing a scanner does.
 *
 * Usage: swap_race <seconds> <a1> <b1> [<a2> <b2> ...]
 * For <seconds> (bounded), exchanges each pair atomically with renameat2(RENAME_EXCHANGE)
 * in a tight loop, so that a name a scanner lstat()ed as a regular file is, an instant later,
 * a device node or a FIFO. Where the filesystem has no RENAME_EXCHANGE (fuse-overlayfs), the
 * pair is rotated through a third name with three rename()s instead. Built static by
 * tests/test_hostile.py for a FROM-scratch image.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
    if (argc < 4 || argc % 2 != 0) {
        fprintf(stderr, "usage: %s <seconds> <a> <b> [<a> <b> ...]\n", argv[0]);
        return 2;
    }
    time_t end = time(NULL) + atoi(argv[1]);
    unsigned long swaps = 0;
    int exchange = 1;
    while (time(NULL) < end) {
        for (int i = 2; i + 1 < argc; i += 2) {
            char spare[4096];
            snprintf(spare, sizeof spare, "%s.swap", argv[i]);
            for (int k = 0; k < 1000; k++) {
                if (exchange && syscall(SYS_renameat2, AT_FDCWD, argv[i], AT_FDCWD,
                                        argv[i + 1], RENAME_EXCHANGE) == 0) {
                    swaps++;
                    continue;
                }
                if (exchange && errno != EINVAL) {
                    perror("renameat2");
                    return 1;
                }
                exchange = 0;
                if (rename(argv[i], spare) || rename(argv[i + 1], argv[i]) ||
                    rename(spare, argv[i + 1])) {
                    fprintf(stderr, "rename: %s\n", strerror(errno));
                    return 1;
                }
                swaps++;
            }
        }
    }
    printf("%lu swaps\n", swaps);
    return 0;
}
