/*
 * lsignal.c: Ctrl-C (and SIGTERM) for a long `ctvnc batch`.
 *
 * Lua has no signal handling: the standalone interpreters turn SIGINT into
 * an error with a stack trace, raised at the next Lua instruction, which
 * never comes while libcurl waits for a slow tower. So the command line asks
 * for the signals itself:
 *
 *   core.catch_signals()    SIGINT and SIGTERM only set a flag and cut the
 *                           process's TCP connections (shutdown(2)), so every
 *                           transfer in flight fails at once; for the next
 *                           second the cut is repeated every 50 ms, for the
 *                           connections libcurl opens again on its own.
 *   core.interrupted()      the signal number caught, or nil
 *   core.release_signals()  the previous handlers back, the cutting stopped
 *
 * What the user gets is then up to Lua: the results so far, the missing ones
 * marked interrupted. Only async-signal-safe calls run in the handler.
 * Never called by the library itself, and not for OpenResty (nginx owns a
 * worker's signals).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "lctvnc.h"

#define TICK_US 50000           /* re-cut period */
#define TICKS 20                /* re-cuts after a signal: one second */
#define MAX_FD 4096             /* highest descriptor looked at, at most */

static volatile sig_atomic_t caught;   /* signal number; 0: none yet */
static volatile sig_atomic_t ticks;    /* re-cuts left */
static int last_fd = 1024;             /* descriptors 3..last_fd-1 swept */
static int catching;
static struct sigaction old_int, old_term, old_alrm;

static int l_catch_signals(lua_State *L);
static int l_interrupted(lua_State *L);
static int l_release_signals(lua_State *L);

static const luaL_Reg funcs[] = {
  {"catch_signals", l_catch_signals},
  {"interrupted", l_interrupted},
  {"release_signals", l_release_signals},
  {NULL, NULL}
};

/* Shuts down every connected or connecting TCP socket of the process; the
 * files, pipes and local sockets are left alone. */
static void cut(void) {
  int fd;
  for (fd = 3; fd < last_fd; fd++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0
        || type != SOCK_STREAM)
      continue;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) continue;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
      shutdown(fd, SHUT_RDWR);
  }
}

/* setitimer(2) is a plain system call on Linux and the BSDs, safe in a
 * handler although POSIX does not list it. */
static void arm(long us) {
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_interval.tv_usec = us;
  it.it_value.tv_usec = us;
  setitimer(ITIMER_REAL, &it, NULL);
}

static void on_signal(int sig) {
  int saved = errno;
  if (sig == SIGALRM) {
    if (ticks > 0) {
      ticks--;
      cut();
    }
    if (ticks <= 0) arm(0);
  } else {
    caught = sig;
    ticks = TICKS;
    cut();
    arm(TICK_US);
  }
  errno = saved;
}

/* core.catch_signals() -> true */
static int l_catch_signals(lua_State *L) {
  struct sigaction sa;
  struct rlimit rl;
  if (!catching) {
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
      last_fd = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > MAX_FD
        ? MAX_FD : (int)rl.rlim_cur;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGALRM);
    sa.sa_flags = 0;            /* no SA_RESTART: poll(2) returns at once */
    caught = 0;
    ticks = 0;
    sigaction(SIGALRM, &sa, &old_alrm);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    catching = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.interrupted() -> signal number | nil */
static int l_interrupted(lua_State *L) {
  if (caught) lua_pushinteger(L, (lua_Integer)caught);
  else lua_pushnil(L);
  return 1;
}

/* core.release_signals(): idempotent; interrupted() keeps its answer. */
static int l_release_signals(lua_State *L) {
  (void)L;
  if (catching) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    arm(0);
    ticks = 0;
    sigaction(SIGALRM, &old_alrm, NULL);
    catching = 0;
  }
  return 0;
}

void ctv_open_signal(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
}
