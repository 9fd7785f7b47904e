/*
 * proc.c runs a shell command and collects its standard output, bounded in
 * size and time. It blocks the calling thread, so it is used at start-up
 * only.
 */
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sl_run_capture(const char *what, const char *cmd, size_t max, int timeout_ms, char **out,
                   size_t *len, sl_errors_t *errs)
{
    int fds[2];
    *out = NULL;
    *len = 0;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        sl_errors_add(errs, "%s: cannot create a pipe: %s", what, strerror(errno));
        return SL_ERR_INVALID;
    }
    pid_t pid = fork();
    if (pid < 0) {
        sl_errors_add(errs, "%s: cannot fork: %s", what, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return SL_ERR_INVALID;
    }
    if (pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fds[1], 1);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(fds[1]);
    size_t cap = 4096, n = 0;
    char *buf = sl_xmalloc(cap);
    int64_t deadline = now_ms() + timeout_ms;
    const char *fail = NULL;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            fail = "timed out";
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fail = "timed out";
            break;
        }
        if (n + 1 >= cap) {
            cap *= 2;
            buf = sl_xrealloc(buf, cap);
        }
        ssize_t got = read(fds[0], buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n > max) {
            fail = "printed more than the size limit";
            break;
        }
    }
    close(fds[0]);
    if (fail)
        kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (fail) {
        sl_errors_add(errs, "%s: '%s' %s", what, cmd, fail);
    } else if (WIFSIGNALED(status)) {
        sl_errors_add(errs, "%s: '%s' was killed by signal %d", what, cmd, WTERMSIG(status));
        fail = "signal";
    } else if (WEXITSTATUS(status) != 0) {
        sl_errors_add(errs, "%s: '%s' exited with status %d%s", what, cmd, WEXITSTATUS(status),
                      WEXITSTATUS(status) == 127 ? " (command not found)" : "");
        fail = "status";
    }
    if (fail) {
        free(buf);
        return SL_ERR_INVALID;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SL_OK;
}
