/* Test helper: run a binary from an anonymous memory file (memfd), as fileless malware does.
 *
 * Usage: memfd_exec <binary> [argv0 args...]
 * Reads <binary>, copies it into memfd_create("payload"), and fexecve()s it with the
 * remaining arguments as its argv. Built static by tests/test_procs.py so that it runs in a
 * FROM-scratch image.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s <binary> <argv0> [args...]\n", argv[0]);
        return 2;
    }
    int src = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        perror("open");
        return 1;
    }
    int mem = memfd_create("payload", MFD_CLOEXEC);
    if (mem < 0) {
        perror("memfd_create");
        return 1;
    }
    char buf[65536];
    ssize_t got;
    while ((got = read(src, buf, sizeof buf)) > 0) {
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(mem, buf + done, (size_t)(got - done));
            if (put < 0) {
                perror("write");
                return 1;
            }
            done += put;
        }
    }
    if (got < 0) {
        perror("read");
        return 1;
    }
    close(src);
    fexecve(mem, argv + 2, environ);
    perror("fexecve");
    return 1;
}
