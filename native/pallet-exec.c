/* pallet-exec: the container command's execve, done from a sealed in-memory copy of this program.
 *
 * The built-in runtime's init (src/pallet/runtime/process.py) is a fork of a host Python process.
 * Were it to execve the container's command itself, a command whose interpreter is
 * /proc/self/exe (a script's "#!" line, an ELF's PT_INTERP) would make the kernel run the host's
 * python binary inside the container, where a process of the container could open it and, once no
 * python runs, overwrite it (runc's CVE-2019-5736). So the init execs this program from a sealed
 * memfd (runtime.sealed) and this program execs the command: /proc/self/exe is then the sealed
 * copy, which nothing can write.
 *
 * Usage: pallet-exec SYNCFD PATH ARGV0 [ARG...]   (the environment is the command's)
 * SYNCFD: the init's sync socket (SOCK_SEQPACKET), -1 for none. On a failed execve it gets the
 * init's error message, b"E" + {"type": "CommandNotFound"|"CommandNotExecutable", "msg": ...},
 * as runtime.process._exec_failed sends it, and the exit code is 127 or 126.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

/* JSON string body of s into out (cap bytes, NUL-terminated); returns the length */
static size_t json_escape(char *out, size_t cap, const char *s, int lower) {
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (lower)
            c = (unsigned char)tolower(c);
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "pallet-exec: usage: pallet-exec SYNCFD PATH ARGV0 [ARG...]\n");
        return 125;
    }
    int sync = atoi(argv[1]);
    if (sync >= 0)
        fcntl(sync, F_SETFD, FD_CLOEXEC); /* not the command's */
    execve(argv[2], argv + 3, environ);

    int e = errno, notfound = (e == ENOENT || e == ENOTDIR);
    char name[1024], why[256], msg[1536];
    json_escape(name, sizeof name, argv[3], 0);
    json_escape(why, sizeof why, notfound ? "no such file or directory" : strerror(e ? e : EACCES), 1);
    int len = snprintf(msg, sizeof msg, "E{\"type\": \"%s\", \"msg\": \"%s: %s\"}",
                       notfound ? "CommandNotFound" : "CommandNotExecutable", name, why);
    if (sync >= 0 && len > 0)
        send(sync, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1, MSG_NOSIGNAL);
    else
        fprintf(stderr, "pallet-exec: %s: %s\n", argv[3], strerror(e));
    return notfound ? 127 : 126;
}
