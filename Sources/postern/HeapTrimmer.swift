import CPosternShims
import Dispatch
import Logging
import NIOCore
import PosternCore

#if canImport(Glibc)
    import Glibc
#endif

/// The server's and the mediator's malloc policy: fixed thresholds at start, and the free heap given
/// back to the kernel once a load has passed (`HeapTrimPolicy` decides when).
enum HeapTrimmer {
    /// Free bytes at the top of an arena that `free()` gives back at once. glibc's dynamic default
    /// climbs to 64 MiB after the first large buffer is freed; 4 MiB keeps the slack bounded and
    /// still spares the arena a shrink and regrow per buffer under load.
    static let trimThreshold = 4 << 20
    /// Allocations from this size on get their own mapping, unmapped when freed. Above the largest
    /// buffer a busy relay allocates over and over (1 MiB socket reads, TLS records, frames of up to
    /// 1 MiB), which a mapping each would cost page faults for; below the rare outliers (a backlog of
    /// reads held for a full tunnel), which then leave nothing behind.
    static let mmapThreshold = 4 << 20
    /// How often the process's CPU time is sampled.
    static let interval = TimeAmount.seconds(1)

    nonisolated(unsafe) private static var timer: DispatchSourceTimer?

    /// Sets the thresholds and starts the sampling timer (once per process).
    static func start(logger: Logger) {
        guard timer == nil else { return }
        if postern_malloc_tune(trimThreshold, mmapThreshold) == 0 {
            logger.debug("malloc did not take the trim and mmap thresholds; keeping its defaults")
        }
        var policy = HeapTrimPolicy()
        let source = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        source.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1))
        source.setEventHandler {
            if policy.sample(cpu: processCPU(), freeHeap: postern_malloc_free_bytes(), now: .now()) {
                let released = postern_malloc_trim() == 1
                logger.debug("load passed: free heap \(released ? "given back to the kernel" : "already returned")")
            }
        }
        source.resume()
        timer = source
    }

    /// User and system CPU time of the whole process so far.
    static func processCPU() -> TimeAmount {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return .zero }
        func amount(_ t: timeval) -> TimeAmount { .seconds(Int64(t.tv_sec)) + .microseconds(Int64(t.tv_usec)) }
        return amount(usage.ru_utime) + amount(usage.ru_stime)
    }
}
