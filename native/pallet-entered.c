/* pallet-entered: the process a served exec's monitor keeps inside a container (src/pallet/runtime/entered.py).
 *
 * The Python version is a fork of the monitor: each exec then clones a copy of its address space
 * (~1.4 ms here) whose execve of pallet-init tears that copy down again (~1.3 ms). This program is
 * the same process in ~100 KB: started by the monitor with posix_spawn (so it is the monitor's
 * child), it joins the container's namespaces (the pid namespace for its children only, so it is
 * not a process of the container), loads the container's seccomp filter, and on each request
 * clones with CLONE_PARENT (the new process is the monitor's child) into native/pallet-init on
 * the request's sync socket, sends "P<pid>" there and forgets it. The monitor places the process
 * in the cgroups and hands it the process (runtime.entered.exec_native).
 *
 *   pallet-entered PARENT SOCK INITPIDFD KEEP_MS HELPERFD BPFFD PIDNSFD [NSFD...]
 *
 * PARENT: the monitor's pid (it exits at once if that is not its parent; PR_SET_PDEATHSIG after).
 * SOCK: SOCK_SEQPACKET; a request is any message carrying one descriptor, the sync socket.
 * INITPIDFD: a pidfd of the container's init (it exits when that exits). KEEP_MS: it exits after
 * that long without a request, and on EOF on SOCK. HELPERFD: pallet-init (O_PATH). BPFFD: a pipe
 * holding the classic BPF filter (-1: none). PIDNSFD: the pid namespace (-1: the caller's);
 * NSFD...: the others, user first. Every other descriptor is closed first (the monitor's clients'
 * stdio among them). Any failure: exit 1 (the monitor then does a direct exec).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXFD 16
#define BPF_MAX (1 << 20)

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* close every descriptor but 0, 1, 2 and the ones we were given */
static void close_others(int *keep, int n) {
    int k[MAXFD + 3], m = 0;
    for (int i = 0; i < n; i++)
        if (keep[i] > 2) k[m++] = keep[i];
    qsort(k, (size_t)m, sizeof(int), cmp_int);
    unsigned lo = 3;
    for (int i = 0; i < m; i++) {
        if ((unsigned)k[i] > lo) syscall(SYS_close_range, lo, (unsigned)k[i] - 1, 0U);
        lo = (unsigned)k[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0U, 0U);
}

static void cloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

int main(int argc, char **argv) {
    if (argc < 8) return 2;
    pid_t parent = (pid_t)atoi(argv[1]);
    int sock = atoi(argv[2]), initfd = atoi(argv[3]), keep_ms = atoi(argv[4]), helper = atoi(argv[5]),
        bpffd = atoi(argv[6]), pidns = atoi(argv[7]);
    int nns = argc - 8;
    if (nns > MAXFD - 6) return 2;
    int keep[MAXFD], nkeep = 0, nsfds[MAXFD];
    keep[nkeep++] = sock; keep[nkeep++] = initfd; keep[nkeep++] = helper;
    if (bpffd >= 0) keep[nkeep++] = bpffd;
    if (pidns >= 0) keep[nkeep++] = pidns;
    for (int i = 0; i < nns; i++) keep[nkeep++] = nsfds[i] = atoi(argv[8 + i]);

    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) return 1;
    close_others(keep, nkeep);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
    /* glibc's sigaction refuses its internal 32 and 33, which posix_spawn leaves ignored: the
     * kernel's, so no process of the container inherits them ignored */
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } kdfl = {SIG_DFL, 0, NULL, 0};
    for (int s = 32; s <= 33; s++) syscall(SYS_rt_sigaction, s, &kdfl, NULL, sizeof kdfl.mask);
    signal(SIGPIPE, SIG_IGN); /* (its children's pallet-init resets every disposition) */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    static unsigned char bpf[BPF_MAX];
    size_t nbpf = 0;
    if (bpffd >= 0) {
        ssize_t r;
        while (nbpf < BPF_MAX && (r = read(bpffd, bpf + nbpf, BPF_MAX - nbpf)) != 0) {
            if (r < 0) { if (errno == EINTR) continue; return 1; }
            nbpf += (size_t)r;
        }
        close(bpffd);
        if (nbpf == 0 || nbpf % 8) return 1;
    }
    if (pidns >= 0) {
        if (setns(pidns, CLONE_NEWPID) < 0) return 1;
        close(pidns);
    }
    for (int i = 0; i < nns; i++) {
        if (setns(nsfds[i], 0) < 0) return 1;
        close(nsfds[i]);
    }
    if (nbpf) {
        struct sock_fprog prog = {(unsigned short)(nbpf / 8), (struct sock_filter *)bpf};
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) return 1;
    }
    cloexec(sock); cloexec(initfd); cloexec(helper);

    struct pollfd pf[2] = {{sock, POLLIN, 0}, {initfd, POLLIN, 0}};
    for (;;) {
        int n = poll(pf, 2, keep_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || pf[1].revents) return 0; /* idle, or the container's init exited */
        char data[256];
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
        struct iovec iov = {data, sizeof data};
        struct msghdr mh = {0};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        ssize_t got = recvmsg(sock, &mh, 0);
        if (got <= 0) return 0; /* the monitor closed its end */
        int sync = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int)))
                memcpy(&sync, CMSG_DATA(c), sizeof(int));
        if (sync < 0) return 1;
        long pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), 0UL, 0UL, 0UL, 0UL);
        if (pid < 0) return 1;
        if (pid == 0) {
            char arg[16];
            snprintf(arg, sizeof arg, "%d", sync);
            char *args[] = {"pallet-init", arg, NULL}, *env[] = {NULL};
            syscall(SYS_execveat, helper, "", args, env, AT_EMPTY_PATH);
            _exit(1);
        }
        char msg[24];
        int len = snprintf(msg, sizeof msg, "P%ld", pid);
        send(sync, msg, (size_t)len, MSG_NOSIGNAL);
        close(sync);
    }
}
