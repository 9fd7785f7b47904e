/*
 * Running helper commands: a plugin server's query command (`-dump`) is run
 * through /bin/sh, as Kong runs it, with its output captured up to a limit
 * and a deadline, so that a broken command can neither hang nor flood the
 * process that asked.
 */
#ifndef SL_PROC_H
#define SL_PROC_H

#include "errors.h"

#include <stddef.h>

/*
 * Runs `/bin/sh -c cmd` with stdin from /dev/null and captures its stdout
 * (stderr is passed through). Waits at most timeout_ms; kills the command
 * (its whole process group) when it runs longer or prints more than max
 * bytes. On success *out holds the NUL-terminated output (caller frees) and
 * *len its length. Any failure, including a non-zero exit status, adds
 * "<what>: <reason>" to errs and returns SL_ERR_INVALID.
 */
int sl_run_capture(const char *what, const char *cmd, size_t max, int timeout_ms, char **out,
                   size_t *len, sl_errors_t *errs);

#endif
