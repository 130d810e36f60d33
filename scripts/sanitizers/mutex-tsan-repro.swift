// Why Subgate's locks are NIOLockedValueBox / NIOLock and not Synchronization.Mutex.
//
// Two threads append to an array under a lock. With Synchronization.Mutex, ThreadSanitizer
// reports a "Swift access race" on the array although every access holds the lock: under
// contention Mutex hands over through FUTEX_LOCK_PI / FUTEX_UNLOCK_PI syscalls inside
// libswiftSynchronization.so, which is not instrumented, so TSan sees no happens-before
// between the two critical sections. A pthread mutex (what NIOLock wraps) is intercepted by
// TSan, and the same program is clean.
//
//   swiftc -sanitize=thread -Onone -g scripts/sanitizers/mutex-tsan-repro.swift -o /tmp/mutex-repro
//   SWIFT_BACKTRACE=enable=no /tmp/mutex-repro mutex     # exit 66, one TSan report
//   SWIFT_BACKTRACE=enable=no /tmp/mutex-repro pthread   # exit 0, no report
//
// Measured with Swift 6.3.1 on x86_64 Linux: 3 runs of each, every `mutex` run reported and
// no `pthread` run did. Run it again after a toolchain update before going back to Mutex.
import Glibc
import Synchronization

final class Shared: @unchecked Sendable {
    let mutex = Mutex<[Int]>([])
    var pthreadLock = pthread_mutex_t()
    var plain: [Int] = []
    init() { pthread_mutex_init(&self.pthreadLock, nil) }
}

let shared = Shared()
let usePthread = CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "pthread"
var threads: [pthread_t] = []
for _ in 0..<2 {
    var thread = pthread_t()
    pthread_create(&thread, nil, { _ in
        for i in 0..<20_000 {
            if usePthread {
                pthread_mutex_lock(&shared.pthreadLock)
                shared.plain.append(i)
                if shared.plain.count > 64 { shared.plain.removeAll(keepingCapacity: true) }
                pthread_mutex_unlock(&shared.pthreadLock)
            } else {
                shared.mutex.withLock { value in
                    value.append(i)
                    if value.count > 64 { value.removeAll(keepingCapacity: true) }
                }
            }
        }
        return nil
    }, nil)
    threads.append(thread)
}
for thread in threads { pthread_join(thread, nil) }
print(usePthread ? "pthread: done" : "Mutex: done")
