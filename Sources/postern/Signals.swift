import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `action` once on SIGINT or SIGTERM, so services stop cleanly (GOAWAY, ports closed).
enum Signals {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static func onTermination(_ action: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: action)
            source.resume()
            sources.append(source)
        }
    }

    /// Runs `action` on every SIGHUP (the server reloads its configuration).
    static func onHangup(_ action: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler(handler: action)
        source.resume()
        sources.append(source)
    }
}
