/* pallet-init: the last steps of a prepared container's init (src/pallet/runtime/prepared.py).
 *
 * A prepared container is a fork of the engine's monitor (a Python process of 20-30 MB) that set
 * up its namespaces, cgroups, rootfs and pivot_root ahead of its run. Its own execve of the
 * container's command would first tear down that whole address space (~2 ms here) and its Python
 * finalize costs ~1 ms more. So, still while it waits, it execs this small program (from a
 * descriptor opened before pivot_root: the host's file is out of the container's reach), which
 * waits for the process on the sync socket and does what runtime.process.finalize does:
 *
 *   stdio from the message's descriptors; the command looked up in $PATH (as resolve_command);
 *   setsid; rlimits (never above the current hard limit); oom_score_adj; mkdir -p and chdir cwd;
 *   the bounding set dropped; setgroups/setresgid/setresuid keeping permitted caps; capset and
 *   the ambient caps; no_new_privs; umask; HOME from the container's /etc/passwd when unset;
 *   default signal dispositions and an empty mask; every fd >= 3 close-on-exec; execve.
 *
 * The seccomp filter is already loaded (prepared.py uses this program only then, or with none).
 * Protocol on the socket (SOCK_SEQPACKET, fd argv[1]): it sends "2" once it runs; it receives
 * "G" + NUL-terminated fields (see prepared._encode) with stdin, stdout, stderr as SCM_RIGHTS;
 * a failure is reported as "E" + JSON {"type", "msg"[, "errno", "syscall", "obj"]} (the runtime's
 * error payload) and the exit code is 127 (command not found), 126 (not executable) or 1.
 * EOF on the socket without a message (the caller discarded it): exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#define MSG_MAX (1 << 20)
#define LAST_CAP 40

static int sock = -1;
static char msgbuf[MSG_MAX + 1];

static void json_str(char *out, size_t n, const char *s) {
    size_t j = 0;
    for (; *s && j + 8 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[j++] = '\\'; out[j++] = (char)c; }
        else if (c < 0x20) j += (size_t)snprintf(out + j, n - j, "\\u%04x", c);
        else out[j++] = (char)c;
    }
    out[j] = 0;
}

/* report and exit: kind "CommandNotFound" (127), "CommandNotExecutable" (126), else an OSFailure (1) */
static void fail(const char *kind, const char *msg, const char *syscall_name, int err) {
    static char esc[8192], body[17000];
    int code = 1;
    json_str(esc, sizeof esc, msg);
    if (kind) {
        code = strcmp(kind, "CommandNotFound") == 0 ? 127 : 126;
        snprintf(body, sizeof body, "E{\"type\": \"%s\", \"msg\": \"%s\"}", kind, esc);
    } else {
        snprintf(body, sizeof body, "E{\"type\": \"OSFailure\", \"msg\": \"%s\", \"errno\": %d, \"syscall\": \"%s\", \"obj\": \"\"}",
                 esc, err, syscall_name);
    }
    send(sock, body, strlen(body), MSG_NOSIGNAL);
    _exit(code);
}

static void sysfail(const char *what) {
    int e = errno;
    fail(NULL, strerror(e), what, e);
}

/* the fields of the message, in order */
static char *cur, *end;
static char *field(void) {
    if (cur >= end) fail(NULL, "truncated process message", "recvmsg", EINVAL);
    char *f = cur;
    cur += strlen(cur) + 1;
    return f;
}
static long long num(void) { return strtoll(field(), NULL, 10); }
static unsigned long long unum(void) { return strtoull(field(), NULL, 10); }

static const char *resolve(const char *name, char **env, char *buf, size_t n) {
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    struct stat st;
    static char noexec[8192];
    noexec[0] = 0;
    if (strchr(name, '/')) {
        if (stat(name, &st) == 0) {
            if (S_ISREG(st.st_mode) && access(name, X_OK) == 0) return name;
            snprintf(noexec, sizeof noexec, "%s", name);
        }
    } else {
        for (char **e = env; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0) { path = *e + 5; break; }
        const char *p = path;
        for (;;) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            if (len == 0) snprintf(buf, n, "./%s", name);
            else snprintf(buf, n, "%.*s/%s", (int)len, p, name);
            if (stat(buf, &st) == 0) {
                if (S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return buf;
                if (!noexec[0]) snprintf(noexec, sizeof noexec, "%s", buf);
            }
            if (!colon) break;
            p = colon + 1;
        }
    }
    static char msg[8192];
    if (noexec[0]) {
        snprintf(msg, sizeof msg, "%s: permission denied (not an executable file: %s)", name, noexec);
        fail("CommandNotExecutable", msg, NULL, 0);
    }
    snprintf(msg, sizeof msg, "%s: executable file not found in $PATH", name);
    fail("CommandNotFound", msg, NULL, 0);
    return NULL;
}

static void home_of(unsigned uid, char *out, size_t n) {
    snprintf(out, n, "HOME=/");
    FILE *f = fopen("/etc/passwd", "re");
    if (!f) return;
    char line[4096], want[32];
    snprintf(want, sizeof want, "%u", uid);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *parts[7] = {0};
        int k = 0;
        char *s = line;
        while (k < 7) {
            parts[k++] = s;
            char *c = strchr(s, ':');
            if (!c) break;
            *c = 0;
            s = c + 1;
        }
        if (k > 5 && strcmp(parts[2], want) == 0) {
            snprintf(out, n, "HOME=%s", parts[5][0] ? parts[5] : "/");
            break;
        }
    }
    fclose(f);
}

static void mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) < 0 && errno != EEXIST) sysfail("mkdir");
        *p = '/';
    }
    if (mkdir(buf, 0777) < 0 && errno != EEXIST) sysfail("mkdir");
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    sock = atoi(argv[1]);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* execve made us dumpable again: not until the command's */
    if (send(sock, "2", 1, MSG_NOSIGNAL) < 0) return 1;

    union { char buf[CMSG_SPACE(3 * sizeof(int))]; struct cmsghdr align; } u;
    struct iovec iov = {msgbuf, MSG_MAX};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    ssize_t got;
    do got = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC); while (got < 0 && errno == EINTR);
    if (got <= 0 || msgbuf[0] != 'G') _exit(0); /* discarded */
    int fds[3] = {-1, -1, -1}, nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (nfds > 3) nfds = 3;
            memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
        }
    if (nfds != 3) _exit(0);
    msgbuf[got] = 0;
    cur = msgbuf + 1;
    end = msgbuf + got;

    if (strcmp(field(), "1") != 0) fail(NULL, "unknown process message version", "recvmsg", EINVAL);
    unsigned uid = (unsigned)unum(), gid = (unsigned)unum();
    mode_t mask = (mode_t)unum();
    int ngroups = (int)num();
    gid_t *groups = calloc((size_t)(ngroups > 0 ? ngroups : 1), sizeof(gid_t));
    for (int i = 0; i < ngroups; i++) groups[i] = (gid_t)unum();
    int keep_caps = (int)num();
    unsigned long long bounding = unum(), effective = unum(), permitted = unum(), inheritable = unum(),
                       ambient = unum();
    int nnp = (int)num();
    int nrl = (int)num();
    struct { int kind; long long soft, hard; } rl[16];
    if (nrl > 16) nrl = 16;
    for (int i = 0; i < nrl; i++) { rl[i].kind = (int)num(); rl[i].soft = num(); rl[i].hard = num(); }
    char *oom = field();
    char *cwd = field();
    int nargs = (int)num();
    char **args = calloc((size_t)nargs + 1, sizeof(char *));
    for (int i = 0; i < nargs; i++) args[i] = field();
    int nenv = (int)num();
    char **env = calloc((size_t)nenv + 2, sizeof(char *));
    int has_home = 0;
    for (int i = 0; i < nenv; i++) {
        env[i] = field();
        if (strncmp(env[i], "HOME=", 5) == 0) has_home = 1;
    }

    for (int i = 0; i < 3; i++)
        if (fds[i] != i && dup2(fds[i], i) < 0) sysfail("dup2");
    for (int i = 0; i < 3; i++)
        if (fds[i] > 2) close(fds[i]);
    if (nargs < 1) fail(NULL, "process.args is empty", "execve", EINVAL);
    static char pathbuf[8192];
    const char *path = resolve(args[0], env, pathbuf, sizeof pathbuf);

    if (setsid() < 0) sysfail("setsid");
    for (int i = 0; i < nrl; i++) {
        struct rlimit cur_rl, want;
        if (getrlimit(rl[i].kind, &cur_rl) < 0) sysfail("getrlimit");
        long long hard = rl[i].hard, soft = rl[i].soft;
        if (cur_rl.rlim_max != RLIM_INFINITY && (hard < 0 || (unsigned long long)hard > cur_rl.rlim_max))
            hard = (long long)cur_rl.rlim_max; /* no CAP_SYS_RESOURCE: never above the current hard limit */
        if (hard >= 0 && soft > hard) soft = hard;
        want.rlim_cur = (rlim_t)soft;
        want.rlim_max = (rlim_t)hard;
        if (setrlimit(rl[i].kind, &want) < 0) sysfail("setrlimit");
    }
    if (oom[0]) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, oom, strlen(oom)) < 0) sysfail("oom_score_adj");
        close(fd);
    }
    mkdirs(cwd);
    if (chdir(cwd) < 0) sysfail("chdir");
    if (!keep_caps)
        for (int b = 0; b <= LAST_CAP; b++)
            if (!(bounding >> b & 1) && prctl(PR_CAPBSET_DROP, b, 0, 0, 0) < 0 && errno != EINVAL)
                sysfail("PR_CAPBSET_DROP");
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) sysfail("prctl");
    if (setgroups((size_t)ngroups, groups) < 0) sysfail("setgroups");
    if (setresgid(gid, gid, gid) < 0) sysfail("setresgid");
    if (setresuid(uid, uid, uid) < 0) sysfail("setresuid");
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) sysfail("prctl");
    if (!keep_caps) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        for (int i = 0; i < 2; i++) {
            data[i].effective = (unsigned)(effective >> (32 * i));
            data[i].permitted = (unsigned)(permitted >> (32 * i));
            data[i].inheritable = (unsigned)(inheritable >> (32 * i));
        }
        if (syscall(SYS_capset, &hdr, data) < 0) sysfail("capset");
        for (int b = 0; b <= LAST_CAP; b++)
            if ((ambient >> b & 1) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, b, 0, 0) < 0)
                sysfail("PR_CAP_AMBIENT_RAISE");
    }
    if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) sysfail("PR_SET_NO_NEW_PRIVS");
    umask(mask);
    static char home[4200];
    if (!has_home) {
        home_of(uid, home, sizeof home);
        env[nenv++] = home;
    }
    env[nenv] = NULL;

    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL); /* (KILL, STOP, 32, 33: EINVAL, ignored) */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0); /* a container outlives its caller from here on */
    if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) < 0) {
        for (int fd = 3; fd < 1024; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execve(path, args, env);
    int e = errno;
    static char msg[8192];
    if (e == ENOENT || e == ENOTDIR) {
        snprintf(msg, sizeof msg, "%s: no such file or directory", args[0]);
        fail("CommandNotFound", msg, NULL, 0);
    }
    char low[256];
    snprintf(low, sizeof low, "%s", strerror(e));
    for (char *p = low; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    snprintf(msg, sizeof msg, "%s: %s", args[0], low);
    fail("CommandNotExecutable", msg, NULL, 0);
    return 1;
}
