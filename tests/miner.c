/* Test helper: a harmless program that only *looks* like a cryptominer to YARA.
 *
 * It embeds XMRig-style option strings and a stratum URL, then sleeps. Built static by
 * tests/test_classify.py; it never connects anywhere and mines nothing.
 */
#include <stdio.h>
#include <unistd.h>

static const char *const markers[] = {
    "xmrig/6.21.0",
    "--donate-level=1",
    "randomx",
    "\"cpu-max-threads-hint\": 75",
    "stratum+tcp://pool.invalid.example:3333",
};

int main(int argc, char **argv) {
    if (argc > 9) {
        for (unsigned i = 0; i < sizeof markers / sizeof *markers; i++) puts(markers[i]);
    }
    for (;;) pause();
    return 0;
}
