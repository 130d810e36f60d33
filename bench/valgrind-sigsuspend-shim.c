/* valgrind 3.19 crashes in rt_sigsuspend as libdispatch's dispatch_main (Swift's async main
   on Linux) calls it; pause() parks the main thread the same way for profiling. */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) { (void)mask; pause(); errno = EINTR; return -1; }
