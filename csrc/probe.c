/*
 * probe.c: see probe.h. Name resolution (getaddrinfo) may block for a DNS
 * name; numeric addresses, which CloudTower hands out, never do.
 */
#define _POSIX_C_SOURCE 200809L
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *reason(int err) {
  switch (err) {
  case 0: return "connected";
  case ECONNREFUSED: return "refused";
  case ETIMEDOUT: return "timeout";
  default: return "unreachable";
  }
}

/* Starts one connect; NULL while it is in progress, else the verdict. */
static const char *begin(ctv_probe *p) {
  struct addrinfo hints, *ai = NULL;
  char port[8];
  int fd, rc, err;
  p->fd = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(port, sizeof port, "%u", p->port);
  if (!p->host || getaddrinfo(p->host, port, &hints, &ai) != 0 || !ai)
    return "unresolved";
  fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fd < 0) {
    freeaddrinfo(ai);
    return "unreachable";
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
  err = errno;
  freeaddrinfo(ai);
  if (rc != 0 && err == EINPROGRESS) {
    p->fd = fd;
    return NULL;
  }
  close(fd);
  return reason(rc == 0 ? 0 : err);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctv_probe_run(ctv_probe *p, size_t n, int timeout_ms) {
  struct pollfd *fds = malloc((n ? n : 1) * sizeof *fds);
  size_t *who = malloc((n ? n : 1) * sizeof *who);
  long deadline = now_ms() + timeout_ms;
  size_t i, pending = 0;
  if (!fds || !who) {
    free(fds);
    free(who);
    return -1;
  }
  for (i = 0; i < n; i++) {
    p[i].ok = 0;
    if ((p[i].why = begin(&p[i])) == NULL) pending++;
    else p[i].ok = strcmp(p[i].why, "connected") == 0;
  }
  while (pending > 0) {
    long left = deadline - now_ms();
    size_t k = 0, j;
    int rc;
    if (left <= 0) break;
    for (i = 0; i < n; i++) {
      if (p[i].fd < 0) continue;
      fds[k].fd = p[i].fd;
      fds[k].events = POLLOUT;
      fds[k].revents = 0;
      who[k++] = i;
    }
    rc = poll(fds, (nfds_t)k, (int)left);
    if (rc < 0 && errno != EINTR) break;
    for (j = 0; rc > 0 && j < k; j++) {
      ctv_probe *q = &p[who[j]];
      int err = 0;
      socklen_t len = sizeof err;
      if (!fds[j].revents) continue;
      if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      q->ok = err == 0;
      q->why = reason(err);
      close(q->fd);
      q->fd = -1;
      pending--;
    }
  }
  for (i = 0; i < n; i++) {
    if (p[i].fd >= 0) {
      close(p[i].fd);
      p[i].fd = -1;
      p[i].why = "timeout";
    }
  }
  free(fds);
  free(who);
  return 0;
}
