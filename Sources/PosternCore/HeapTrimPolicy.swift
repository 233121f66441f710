import NIOCore

/// When a relay gives its free heap back to the kernel (`malloc_trim`). Under load a relay holds
/// megabytes of buffers; once they are freed glibc keeps the pages in its arenas, and the process's
/// RSS stays at its peak for as long as it runs (measured: 103 MiB after eight iperf3 streams, 41 MiB
/// after one trim). Trimming costs a walk over every arena under its lock and page faults when the
/// memory is used again, so it is done once the load has dropped, never while it lasts.
///
/// Fed, at a fixed interval, the process's CPU time so far and the allocator's free bytes: a sample
/// that used little CPU after samples that used much means the load has stopped, and asks for one
/// trim; so does a quiet sample after megabytes were freed without load (users that stopped reading
/// went away). Pure: the caller reads the clock, the CPU time and the allocator.
public struct HeapTrimPolicy: Sendable {
    /// CPU used under load since the last trim that makes a trim worth it: less frees little.
    public var workWorthTrimming: TimeAmount = .milliseconds(200)
    /// CPU per second of wall time below which the process counts as quiet (keepalives and idle
    /// sockets cost well under 1%).
    public var quietShare: Double = 0.02

    private var lastCPU: TimeAmount?
    private var lastTime: NIODeadline?
    /// CPU used in loaded samples since the last trim (or the start).
    private var workSinceTrim: TimeAmount = .zero
    /// Growth of the free heap since the last trim that is worth a trim in a quiet second, whatever
    /// the CPU: users that stopped reading cost no CPU, yet their windows' worth of buffers is freed
    /// when they go.
    public var freedWorthTrimming = 4 << 20
    /// Free heap bytes at the last trim (or the first sample).
    private var freeAtTrim: Int?
    public private(set) var trims = 0

    public init() {}

    /// One sample: the process's CPU time (user + system) at `now`, and the bytes free inside the
    /// allocator's arenas (`freeHeap`, nil when unknown). True when the caller should trim now.
    public mutating func sample(cpu: TimeAmount, freeHeap: Int? = nil, now: NIODeadline) -> Bool {
        defer {
            lastCPU = cpu
            lastTime = now
        }
        if freeAtTrim == nil { freeAtTrim = freeHeap }
        guard let lastCPU, let lastTime, now > lastTime else { return false }
        let used = max(.zero, cpu - lastCPU)
        let wall = now - lastTime
        let share = Double(used.nanoseconds) / Double(wall.nanoseconds)
        guard share < quietShare else {
            // Only load counts: an idle process's keepalives never add up to a trim.
            workSinceTrim = workSinceTrim + used
            return false
        }
        let freed = (freeHeap ?? 0) - (freeAtTrim ?? freeHeap ?? 0)
        guard workSinceTrim >= workWorthTrimming || freed >= freedWorthTrimming else { return false }
        workSinceTrim = .zero
        freeAtTrim = freeHeap
        trims += 1
        return true
    }
}
