import ArgumentParser
import NIOCore
import PosternCore

/// `--keepalive` and `--dead-timeout` checked together, since a
/// dead timeout shorter than the keepalive interval would declare every quiet tunnel dead.
enum Timing {
    static func apply(keepalive: Double?, deadTimeout: Double?, to settings: inout SessionSettings) throws {
        if let k = keepalive {
            guard k >= 0.1 && k <= 3600 else { throw ValidationError("keepalive must be between 0.1 and 3600 seconds") }
            settings.keepaliveInterval = .nanoseconds(Int64(k * 1e9))
        }
        if let d = deadTimeout {
            guard d >= 0.3 && d <= 86400 else { throw ValidationError("dead timeout must be between 0.3 and 86400 seconds") }
            settings.deadTimeout = .nanoseconds(Int64(d * 1e9))
        }
        guard settings.deadTimeout > settings.keepaliveInterval else {
            throw ValidationError("the dead timeout must be longer than the keepalive interval")
        }
    }

    /// `--udp-keepalive`: seconds between a UDP channel's keepalives, its dead timeout three of them
    /// (docs/protocol.md §9.7); 0 turns UDP channels off (every datagram takes the TCP channel).
    static func applyUDP(keepalive: Double?, to settings: inout UDPChannelSettings, enabled: inout Bool) throws {
        guard let k = keepalive else { return }
        if k == 0 {
            enabled = false
            return
        }
        guard k >= 0.1 && k <= 3600 else { throw ValidationError("--udp-keepalive must be 0 (off) or between 0.1 and 3600 seconds") }
        let interval = TimeAmount.nanoseconds(Int64(k * 1e9))
        settings = UDPChannelSettings(keepaliveInterval: interval, deadTimeout: interval * 3)
    }
}
