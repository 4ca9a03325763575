/* paas-shim: the container's PID 1 once setup is done, in place of a Python process.
 *
 * The Python init (runtime/init.py) sets the container up, forks the app's process (which
 * waits on the "start" pipe before it confines itself and execs) and then execs us with
 * the fds and settings below. From here on we only supervise, so we stay small: the host
 * pays our memory once per running container.
 *
 *   argv: paas-shim START_W ERRORS_R STDOUT_R STDERR_R STATE_DIR_FD REPORT_FD APP_PID
 *                   LOG_MAX_BYTES LOG_FILES [TTY INPUT_W ATTACH]
 *
 * The last three for `run -i`/`-t` (-1: none). TTY 1: STDOUT_R is a pty master (STDERR_R
 * -1) and INPUT_W the same master; else INPUT_W is the app's stdin pipe. ATTACH is a unix
 * socket to the client (Runtime.attach_start): what it sends goes to INPUT_W until it hangs
 * up (then a stdin pipe is closed: EOF, as Docker does), and the output goes to it as well
 * as to the log, in Docker's frames: [1 stdout | 2 stderr, 0, 0, 0, uint32 BE length] data.
 *
 * The protocol and file names are those of runtime/launchspec.py, the record format and
 * the rotation those of runtime/logwriter.py (LineSplitter, LogWriter): the engine reads
 * what we write with the same code as before. Built static (libc only) because we are
 * exec'd by fd after pivot_root, when no host library is reachable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h> /* renameat only: no stdio streams here */
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_CODE_FILE "exit_code"
#define ERROR_FILE "error"
#define LOG_FILE "container.log"
#define EXIT_SETUP_FAILED 125
#define MAX_LINE (16 * 1024)
/* After the app exits, how long a process it left behind may keep its output pipes open. */
#define DRAIN_GRACE_MS 500
#define STAMP_LEN 30 /* 2006-01-02T15:04:05.000000000Z */
#define READ_SIZE (64 * 1024)
/* Room for a few records of the longest kind (stamp, stream, tag, MAX_LINE text). */
#define OUT_SIZE (4 * (MAX_LINE + 64))
#define ERROR_SIZE 4096

struct config {
    int start_w, errors_r, stdout_r, stderr_r, state_fd, report_fd;
    pid_t app;
    long long log_max_bytes;
    int log_files;
    int tty, input_w, attach;
};

/* One output stream of the app: its pipe and the line it has not finished yet. */
struct stream {
    int fd; /* -1 once it reached EOF */
    const char *name;
    size_t pending_len;
    char pending[MAX_LINE];
};

/* Where records go: fd 1 as is (Runtime.run reads it), or LOG_FILE with rotation. */
struct log {
    int fd;
    long long max_bytes; /* 0: no rotation */
    long long size;
    int files;
    int dir_fd;
    size_t used;
    char buf[OUT_SIZE];
};

static struct stream out_stream = {.name = "stdout"};
static struct stream err_stream = {.name = "stderr"};
static struct log log_out;
static char read_buf[READ_SIZE];
/* Attached (`run -i`/`-t`): the client's socket, the app's input and what is left to write. */
static int attach_fd = -1, input_fd = -1, input_is_tty, input_eof;
static size_t input_len, input_off;
static char input_buf[READ_SIZE];

/* ---- small helpers ------------------------------------------------------------------- */

/* Everything of `len` bytes, retrying short writes; how much got written. */
static size_t write_all(int fd, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return done;
}

/* A non-negative decimal; -1 for anything else (strtoll would pull in locale code). */
static int parse_int(const char *text, long long *out)
{
    long long value = 0;
    if (!*text)
        return -1;
    for (; *text; text++) {
        if (*text < '0' || *text > '9' || value > (LLONG_MAX - 9) / 10)
            return -1;
        value = value * 10 + (*text - '0');
    }
    *out = value;
    return 0;
}

static int leap(long year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Days since 1970-01-01 as a date. Not gmtime_r: glibc's reads /etc/localtime first, a
 * file of the container (a FIFO there would hang us). Cached: the day rarely changes. */
static void civil_date(long days, long *year, int *month, int *day)
{
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    static long cached_days = -1, cached_year;
    static int cached_month, cached_day;
    if (days != cached_days) {
        long y = 1970, rest = days < 0 ? 0 : days;
        while (rest >= 365 + leap(y))
            rest -= 365 + leap(y++);
        int m = 0;
        while (rest >= month_days[m] + (m == 1 && leap(y)))
            rest -= month_days[m] + (m == 1 && leap(y)), m++;
        cached_days = days, cached_year = y, cached_month = m + 1, cached_day = (int)rest + 1;
    }
    *year = cached_year, *month = cached_month, *day = cached_day;
}

/* The time of now in the record format: fixed width, so records sort as strings. */
static void stamp_now(char out[STAMP_LEN + 1])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long seconds = now.tv_sec < 0 ? 0 : (long)(now.tv_sec % 86400), year;
    int month, day;
    civil_date((long)(now.tv_sec / 86400), &year, &month, &day);
    long fields[] = {year, month, day, seconds / 3600, seconds / 60 % 60, seconds % 60, now.tv_nsec};
    int widths[] = {4, 2, 2, 2, 2, 2, 9};
    const char seps[] = "--T::.Z";
    char *p = out;
    for (int i = 0; i < 7; i++) {
        long value = fields[i];
        for (int d = widths[i] - 1; d >= 0; d--) {
            p[d] = (char)('0' + value % 10);
            value /= 10;
        }
        p += widths[i];
        *p++ = seps[i];
    }
    *p = '\0';
}

/* Atomically, so the engine never reads half a file: a temp name, then rename. */
static void write_state(int dir_fd, const char *name, const char *text)
{
    char tmp[64] = ".";
    strcat(strcat(tmp, name), ".tmp");
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return; /* nothing to do about it: the engine then reports the exit as a kill */
    write_all(fd, text, strlen(text));
    close(fd);
    renameat(dir_fd, tmp, dir_fd, name);
}

static void format_int(char *out, long long value)
{
    char digits[24];
    int n = 0;
    int negative = value < 0;
    unsigned long long rest = negative ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        digits[n++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest);
    if (negative)
        *out++ = '-';
    while (n)
        *out++ = digits[--n];
    *out = '\0';
}

/* ---- the log: LogWriter's rotation -------------------------------------------------- */

static int open_log(int dir_fd)
{
    return openat(dir_fd, LOG_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void log_write_raw(struct log *log, const char *data, size_t len)
{
    /* A full disk or a reader gone: lose the output, keep reaping. */
    log->size += (long long)write_all(log->fd, data, len);
}

static void log_rotate(struct log *log)
{
    char older[sizeof LOG_FILE + 24], newer[sizeof LOG_FILE + 24];
    for (int index = log->files - 1; index > 0; index--) {
        strcpy(older, LOG_FILE);
        if (index > 1) {
            strcat(older, ".");
            format_int(older + strlen(older), index - 1);
        }
        strcpy(newer, LOG_FILE ".");
        format_int(newer + strlen(newer), index);
        if (renameat(log->dir_fd, older, log->dir_fd, newer) < 0 && errno != ENOENT)
            goto keep; /* keep appending to the file we have; try again one cap later */
    }
    if (log->files == 1 && unlinkat(log->dir_fd, LOG_FILE, 0) < 0)
        goto keep;
    int fd = open_log(log->dir_fd);
    if (fd < 0)
        goto keep;
    close(log->fd);
    log->fd = fd;
keep:
    log->size = 0;
}

/* Whole records; rotate between two records when the next would pass the cap, and give a
 * record above the cap a file of its own. */
static void log_write(struct log *log, const char *records, size_t len)
{
    while (log->max_bytes && log->size + (long long)len > log->max_bytes) {
        /* above the cap already (a file of an earlier start): no room at all */
        size_t room = log->size < log->max_bytes ? (size_t)(log->max_bytes - log->size) : 0;
        const char *last = room ? memrchr(records, '\n', room < len ? room : len) : NULL;
        size_t cut = last ? (size_t)(last - records) + 1 : 0;
        if (!cut && !log->size) {
            const char *newline = memchr(records, '\n', len);
            cut = newline ? (size_t)(newline - records) + 1 : len;
        }
        log_write_raw(log, records, cut);
        records += cut;
        len -= cut;
        log_rotate(log);
    }
    if (len)
        log_write_raw(log, records, len);
}

static void log_flush(struct log *log)
{
    log_write(log, log->buf, log->used);
    log->used = 0;
}

/* One record: `stamp stream tag text\n`; buffered, so a chunk of lines is one write. */
static void log_record(struct log *log, const char *stamp, const char *stream, char tag,
                       const char *text, size_t len)
{
    size_t need = STAMP_LEN + 1 + strlen(stream) + 3 + len + 1;
    if (log->used + need > sizeof log->buf)
        log_flush(log);
    char *p = log->buf + log->used;
    memcpy(p, stamp, STAMP_LEN);
    p += STAMP_LEN;
    *p++ = ' ';
    memcpy(p, stream, strlen(stream));
    p += strlen(stream);
    *p++ = ' ';
    *p++ = tag;
    *p++ = ' ';
    memcpy(p, text, len);
    p += len;
    *p++ = '\n';
    log->used += need;
}

static void log_open(struct log *log, const struct config *config)
{
    log->fd = 1;
    log->dir_fd = config->state_fd;
    log->files = config->log_files > 1 ? config->log_files : 1;
    if (!config->log_max_bytes)
        return;
    int fd = open_log(config->state_fd);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { /* the engine's fd on the same file: unrotated */
        if (fd >= 0)
            close(fd);
        return;
    }
    log->fd = fd;
    log->max_bytes = config->log_max_bytes;
    log->size = st.st_size;
}

/* ---- attach: the client's input and a copy of the output ------------------------------ */

/* No more input: a stdin pipe is closed, so the app reads EOF; a pty master stays ours. */
static void input_stop(void)
{
    if (input_fd >= 0 && !input_is_tty)
        close(input_fd);
    input_fd = -1;
    input_len = input_off = 0;
}

/* The client went away: the app keeps running, detached, and we keep logging it. */
static void attach_close(void)
{
    close(attach_fd);
    attach_fd = -1;
    input_stop();
}

static void attach_send(int stream, const char *data, size_t len)
{
    unsigned char header[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(len >> 24),
                               (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
    if (write_all(attach_fd, (const char *)header, sizeof header) != sizeof header ||
        write_all(attach_fd, data, len) != len)
        attach_close();
}

/* Write what the client sent; nonblocking, so an app that does not read its input never
 * stops us logging and reaping (poll says when there is room again). */
static void input_flush(void)
{
    while (input_off < input_len) {
        ssize_t n = write(input_fd, input_buf + input_off, input_len - input_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* the app closed its stdin */
            input_stop();
            return;
        }
        input_off += (size_t)n;
    }
    input_len = input_off = 0;
}

/* Once the app's input is closed we still read (and drop) what the client sends: blocked
 * sending it, the client would stop taking the output we write. */
static void input_read(void)
{
    ssize_t n = read(attach_fd, input_buf, sizeof input_buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* the client's input ended (or the client is gone) */
        input_stop();
        input_eof = 1;
        return;
    }
    if (input_fd < 0)
        return;
    input_len = (size_t)n;
    input_off = 0;
    input_flush();
}

/* ---- lines: LineSplitter's records ------------------------------------------------- */

/* A line is cut into P(artial) records of MAX_LINE bytes and ends with an F(ull) one. The
 * cuts fall at multiples of MAX_LINE from the line's start however the output was chunked,
 * so we can emit a P record as soon as a byte past a full MAX_LINE arrives. */
static void stream_feed(struct stream *s, const char *chunk, size_t len, const char *stamp)
{
    while (len) {
        const char *newline = memchr(chunk, '\n', len);
        size_t take = newline ? (size_t)(newline - chunk) : len;
        while (take) {
            if (s->pending_len == MAX_LINE) {
                log_record(&log_out, stamp, s->name, 'P', s->pending, MAX_LINE);
                s->pending_len = 0;
            }
            size_t room = MAX_LINE - s->pending_len, n = take < room ? take : room;
            memcpy(s->pending + s->pending_len, chunk, n);
            s->pending_len += n;
            chunk += n;
            len -= n;
            take -= n;
        }
        if (newline) {
            log_record(&log_out, stamp, s->name, 'F', s->pending, s->pending_len);
            s->pending_len = 0;
            chunk++;
            len--;
        }
    }
}

/* The last line, kept even without its newline. */
static void stream_finish(struct stream *s, const char *stamp)
{
    if (s->pending_len)
        log_record(&log_out, stamp, s->name, 'F', s->pending, s->pending_len);
    s->pending_len = 0;
}

/* Read what the app wrote; at EOF flush its last line and stop watching the pipe. */
static void stream_read(struct stream *s)
{
    ssize_t n = read(s->fd, read_buf, sizeof read_buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    char stamp[STAMP_LEN + 1];
    stamp_now(stamp); /* when the line was read: as close to its writing as we get */
    if (n > 0) {
        stream_feed(s, read_buf, (size_t)n, stamp);
        if (attach_fd >= 0)
            attach_send(s == &err_stream ? 2 : 1, read_buf, (size_t)n);
    } else {
        stream_finish(s, stamp);
        close(s->fd);
        s->fd = -1;
    }
    log_flush(&log_out);
}

/* ---- start: the app's exec, or why it failed ----------------------------------------- */

static void report(int fd, const char *kind, const char *message)
{
    /* The engine may have stopped listening; the state files still tell the story. */
    write_all(fd, kind, strlen(kind));
    if (message) {
        write_all(fd, " ", 1);
        write_all(fd, message, strlen(message));
    }
    write_all(fd, "\n", 1);
}

/* Everything the app's process wrote on the CLOEXEC errors pipe: empty once exec worked. */
static size_t read_errors(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (len += (size_t)n) == size - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    return len;
}

/* "<exit code> <why>" from the app's process: log it as the app's stderr, record it and
 * tell the engine, like the Python init does for a failure of its own setup. */
static void fail_start(const struct config *config, char *errors)
{
    char *message = strchr(errors, ' ');
    long long code;
    if (message)
        *message++ = '\0';
    if (!message || parse_int(errors, &code) < 0 || code < 0 || code > 255) {
        message = message ? message : errors;
        code = EXIT_SETUP_FAILED;
    }
    char stamp[STAMP_LEN + 1], text[ERROR_SIZE + 64] = "paas: container failed to start: ";
    stamp_now(stamp);
    strcat(strcat(text, message), "\n");
    log_out.fd = 2; /* the log file or Runtime.run's pipe: the user sees it as the app's */
    stream_feed(&err_stream, text, strlen(text), stamp);
    log_flush(&log_out);
    char digits[24];
    format_int(digits, code);
    write_state(config->state_fd, ERROR_FILE, message);
    write_state(config->state_fd, EXIT_CODE_FILE, digits);
    report(config->report_fd, "error", message);
    _exit((int)code);
}

/* ---- signals and children ------------------------------------------------------------ */

/* Every signal, the two glibc keeps for itself included (it would drop them from a
 * sigset_t): the kernel then queues them all for the signalfd, even for a PID 1. */
static int block_all_signals(void)
{
    sigset_t all;
    memset(&all, 0xff, sizeof all);
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, _NSIG / 8) < 0)
        return -1;
    return signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Pass each signal on to the app (0: reaped, its pid may name another process by now),
 * except SIGCHLD (ours) and those our own writes raised (SIGPIPE, SIGXFSZ: their sender
 * is us). An app that just exited is not an error. */
static void forward_signals(int sfd, pid_t app, pid_t self)
{
    struct signalfd_siginfo info;
    while (read(sfd, &info, sizeof info) == sizeof info) {
        if (app && info.ssi_signo != SIGCHLD && (pid_t)info.ssi_pid != self)
            kill(app, (int)info.ssi_signo);
    }
}

/* A wait status as a shell reports it: the exit code, or 128+N after signal N. */
static int exit_code(int status)
{
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Reap whatever exited (we are PID 1: orphans are ours); true once the app was among them. */
static int reap(pid_t app, int *code)
{
    int status, exited = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (pid == app) {
            *code = exit_code(status);
            exited = 1;
        }
    return exited;
}

/* Only if poll failed: reap until the app's exit, blocking (signals then wait for it). */
static int wait_app(pid_t app)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, 0)) != app)
        if (pid < 0 && errno != EINTR)
            return EXIT_SETUP_FAILED;
    return exit_code(status);
}

static long long now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Log the app's output, forward signals and reap until the app has exited and its output
 * is drained (or DRAIN_GRACE_MS passed); the app's exit code. */
static int supervise(const struct config *config, int sfd)
{
    struct stream *streams[] = {&out_stream, &err_stream};
    pid_t self = getpid();
    int code = 0, exited = 0;
    long long deadline = 0;
    for (;;) {
        struct pollfd fds[5] = {{.fd = sfd, .events = POLLIN}};
        for (int i = 0; i < 2; i++)
            fds[i + 1] = (struct pollfd){.fd = streams[i]->fd, .events = POLLIN};
        /* poll skips negative fds: the client's input only while we can take more of it */
        int reading = attach_fd >= 0 && !input_eof && !input_len;
        fds[3] = (struct pollfd){.fd = reading ? attach_fd : -1, .events = POLLIN};
        fds[4] = (struct pollfd){.fd = input_len ? input_fd : -1, .events = POLLOUT};
        int open_streams = (out_stream.fd >= 0) + (err_stream.fd >= 0);
        if (exited && !open_streams)
            break;
        int timeout = exited ? (int)(deadline - now_ms()) : -1;
        if (exited && timeout <= 0)
            break;
        if (poll(fds, 5, timeout) < 0 && errno != EINTR)
            break;
        if (fds[0].revents) {
            forward_signals(sfd, exited ? 0 : config->app, self);
            if (reap(config->app, &code) && !exited) {
                exited = 1;
                deadline = now_ms() + DRAIN_GRACE_MS;
            }
        }
        for (int i = 0; i < 2; i++)
            if (fds[i + 1].revents && streams[i]->fd >= 0)
                stream_read(streams[i]);
        if (fds[3].revents && attach_fd >= 0)
            input_read();
        if (fds[4].revents && input_len)
            input_flush();
    }
    char stamp[STAMP_LEN + 1];
    stamp_now(stamp);
    for (int i = 0; i < 2; i++)
        stream_finish(streams[i], stamp);
    log_flush(&log_out);
    return exited ? code : wait_app(config->app);
}

/* ---- main -------------------------------------------------------------------------- */

static int parse_config(int argc, char **argv, struct config *config)
{
    long long v[12] = {[9] = 0, [10] = -1, [11] = -1};
    if (argc != 10 && argc != 13)
        return -1;
    for (int i = 0; i < argc - 1; i++) {
        /* -1: no such fd (STDERR_R with a tty, INPUT_W and ATTACH when not wanted) */
        int none_ok = i == 3 || i >= 10;
        if (none_ok && !strcmp(argv[i + 1], "-1"))
            v[i] = -1;
        else if (parse_int(argv[i + 1], &v[i]) < 0 || (i != 7 && v[i] > INT_MAX))
            return -1;
    }
    *config = (struct config){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4],
                              (int)v[5], (pid_t)v[6], v[7], (int)v[8],
                              (int)v[9], (int)v[10], (int)v[11]};
    return 0;
}

int main(int argc, char **argv)
{
    /* exec made us dumpable again: /proc/1/{exe,root,environ,fd} must stay out of the
     * container's reach, and no container process runs before the start byte below. */
    prctl(PR_SET_DUMPABLE, 0);
    struct config config;
    if (parse_config(argc, argv, &config) < 0) {
        static const char usage[] = "paas-shim: bad arguments (started by runtime/init.py only)\n";
        write_all(2, usage, sizeof usage - 1);
        return EXIT_SETUP_FAILED;
    }
    int sfd = block_all_signals();
    /* The app's process confines itself and execs once it reads this byte. */
    write_all(config.start_w, "s", 1);
    close(config.start_w);
    char errors[ERROR_SIZE];
    if (sfd < 0) {
        kill(config.app, SIGKILL);
        strcpy(errors, "125 cannot watch signals");
        fail_start(&config, errors);
    }
    if (read_errors(config.errors_r, errors, sizeof errors))
        fail_start(&config, errors);
    report(config.report_fd, "ok", NULL);
    close(config.report_fd);
    log_open(&log_out, &config);
    out_stream.fd = config.stdout_r;
    err_stream.fd = config.stderr_r;
    attach_fd = config.attach;
    input_fd = config.input_w;
    input_is_tty = config.tty;
    if (input_fd >= 0)
        fcntl(input_fd, F_SETFL, fcntl(input_fd, F_GETFL) | O_NONBLOCK);
    int code = supervise(&config, sfd);
    if (attach_fd >= 0) /* all output is out: the client reads EOF, then waits for the exit */
        shutdown(attach_fd, SHUT_RDWR);
    /* Runtime.run reads our stdout to EOF, then waits for our exit: it goes on meanwhile. */
    close(1);
    close(2);
    char digits[24];
    format_int(digits, code);
    write_state(config.state_fd, EXIT_CODE_FILE, digits);
    return code;
}
