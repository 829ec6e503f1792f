/* pallet-idle: what the shared container monitor becomes while nothing happens.
 *
 * The monitor (src/pallet/engine/monitor_loop.py) is a Python process of ~10 MB PSS. When it has
 * watched its containers for PALLET_MONITOR_IDLE seconds with nothing to do (no request, no
 * output, no exit, no restart due), it execs this program, keeping its pid, its children (the
 * container inits: execve does not change a parent), its subreaper flag and every descriptor it
 * still needs. This program only waits: for a descriptor to become readable (a client on the
 * monitor's socket, a container's output) or a child to exit. Then it execs the monitor's Python
 * again, which reads its state back (<runroot>/monitor.idle) and handles what woke it: nothing is
 * read, accepted or reaped here, so no event can be lost or handled twice.
 *
 * Usage: pallet-idle FD[,FD...] PROGRAM [ARG...]
 *
 * Signals: SIGCHLD, SIGTERM, SIGINT and SIGHUP are blocked (the monitor's Python unblocks them once
 * its handlers are set, so one sent meanwhile is delivered to it, not lost); SIGCHLD and SIGTERM
 * wake, SIGINT and SIGHUP stay pending (the monitor ignores them). ~100 lines: no policy lives here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FDS 4096

static int child_waiting(void) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    /* WNOWAIT: see a finished child without reaping it (the monitor reaps and records it) */
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD; /* no child at all: nothing to watch, let the monitor decide */
    return si.si_pid != 0;
}

int main(int argc, char **argv) {
    static struct pollfd pfd[MAX_FDS + 1];
    sigset_t set;
    int n = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: pallet-idle FD[,FD...] PROGRAM [ARG...]\n");
        return 2;
    }
    for (char *p = argv[1]; *p && n < MAX_FDS;) {
        char *end;
        long fd = strtol(p, &end, 10);
        if (end == p || fd < 0)
            break;
        pfd[n].fd = (int)fd;
        pfd[n].events = POLLIN;
        n++;
        p = (*end == ',') ? end + 1 : end;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL); /* first: a child exiting from now on leaves SIGCHLD pending */

    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGTERM);
    int sfd = signalfd(-1, &wake, SFD_CLOEXEC);
    if (sfd >= 0) {
        pfd[n].fd = sfd;
        pfd[n].events = POLLIN;
    }

    /* signalfd reports pending signals without consuming them until read: it is never read, so
     * whatever woke this program stays pending for the monitor */
    while (!child_waiting()) {
        sigset_t pending;
        if (sigpending(&pending) == 0 &&
            (sigismember(&pending, SIGCHLD) || sigismember(&pending, SIGTERM)))
            break;
        int r = poll(pfd, (nfds_t)(sfd >= 0 ? n + 1 : n), sfd >= 0 ? -1 : 1000);
        if (r < 0 && errno != EINTR)
            break;
        int woke = 0;
        for (int i = 0; i < n && r > 0; i++)
            if (pfd[i].revents)
                woke = 1;
        if (woke)
            break;
    }
    if (sfd >= 0)
        close(sfd);
    execvp(argv[2], argv + 2);
    perror("pallet-idle: exec");
    return 127;
}
