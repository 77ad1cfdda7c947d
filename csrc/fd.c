/*
** fd.c -- readiness descriptors: the eventfd a thread or a channel makes on
** first request (t:fd(), ch:fd()), so that an event loop that polls
** descriptors (libuv, epoll, select, nginx) can wait on ffipar without
** blocking. Who signals, who resets and why no signal is lost is written
** down with each object (thread.c, channel.c); this file wraps the calls.
**
** An eventfd is a 64-bit counter: a write adds to it, and it is readable
** while it is not zero; a read returns it and sets it to zero (no
** EFD_SEMAPHORE). Two signals before a reset are one readiness, which is
** what both objects want.
*/
#include "shim.h"
#include <errno.h>
#include <unistd.h>
#include <sys/eventfd.h>

int fd_new(void)
{
  /* Non-blocking: a reset of a zero counter must not wait. Close-on-exec:
  ** a child process has no use for it. */
  return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void fd_signal(int fd)
{
  uint64_t one = 1;
  /* EAGAIN would need a counter at 2^64 - 2: a signal is at most one write
  ** per reset, so it cannot happen. */
  while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {}
}

void fd_reset(int fd)
{
  uint64_t n;
  /* EAGAIN: the counter was already zero. */
  while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR) {}
}

void fd_close(int fd)
{
  if (fd >= 0) close(fd);
}
