import Foundation
import PosternCore
import PosternPacket

/// The server at one moment, as `GET /v1/status` answers it (`postern ctl status`) and as `/metrics`
/// renders it (`MetricsText`). Built on the event loop from the registry and the forwards, so both
/// views read the same plain counters and nothing on the data path is shared between threads.
public struct ServerStatus: Codable, Sendable {
    public struct Mediator: Codable, Sendable {
        public var name: String
        public var connected: Bool
        /// Sessions admitted under this name since the server started; reconnects are this less one.
        public var sessions: UInt64
        public var from: String?
        public var connectedAt: String?
        public var ports: Int
        public var bytesIn: UInt64
        public var bytesOut: UInt64
        /// "udp" while a UDP channel is up, else "tcp" (docs/protocol.md §9).
        public var datagramPath: String
        public var udpSent: UInt64
        public var udpReceived: UInt64
        /// The latest keepalive round trip on the TCP channel (PING to PONG), when one was measured.
        public var keepaliveRTTSeconds: Double?
        /// The same on the UDP channel that is up, if any.
        public var udpKeepaliveRTTSeconds: Double?
        /// TUN mode's packets by end: "server" (the server's relay) and "mediator" (its last
        /// TUN_STATS, docs/protocol.md §10.5). Nil while the mediator is not in TUN mode.
        public var tunPackets: [String: PacketCounters]?

        public var reconnects: UInt64 { sessions > 0 ? sessions - 1 : 0 }
    }

    public struct Forward: Codable, Sendable {
        public var spec: String
        public var mediator: String
        public var transport: String
        /// "listening", "waiting" (for its mediator) or "failed" (`reason` says why).
        public var state: String
        public var reason: String?
        public var connectionsOpen: Int
        public var connectionsTotal: UInt64
        public var bytesToMediator: UInt64
        public var bytesFromMediator: UInt64
        public var refusals: UInt64
        public var policyDenials: UInt64
        public var errors: UInt64
        /// Datagrams a `udp:` forward's `rate=` dropped.
        public var rateLimitDrops: UInt64 = 0
    }

    /// A SOCKS5 listener (`--socks`, config `socks`, `ctl forwards add socks:…`).
    public struct SOCKS: Codable, Sendable {
        /// As `ctl forwards add/remove` takes it: `socks:ADDR:PORT=NAME`.
        public var spec: String
        public var mediator: String
        /// "listening", "waiting" (for its mediator: requests are refused until it connects) or
        /// "failed" (`reason` says why).
        public var state: String
        public var reason: String?
        public var authentication: String
        public var connectionsOpen: Int
        public var connectionsTotal: UInt64
        /// In their handshake now, and closed at accept because too many were.
        public var handshaking: Int
        public var refusals: UInt64
    }

    public struct Process: Codable, Sendable {
        public var residentBytes: UInt64
        public var openFiles: Int
    }

    public var version: String
    public var startedAt: String
    public var uptimeSeconds: Double
    public var mediators: [Mediator]
    public var forwards: [Forward]
    public var socks: [SOCKS]? = nil
    public var process: Process
}

extension ServerStatus.Forward {
    /// A forward's state, from what it knows and whether its mediator is connected now.
    static func state(listening: Bool, failure: String?, mediatorConnected: Bool, listensOnServer: Bool) -> (String, String?) {
        if let failure, !listening { return ("failed", failure) }
        if listensOnServer {
            guard listening else { return ("failed", "not bound") }
            return mediatorConnected ? ("listening", nil) : ("waiting", "mediator not connected")
        }
        if !mediatorConnected { return ("waiting", "mediator not connected") }
        return listening ? ("listening", nil) : ("waiting", "opening its port on the mediator")
    }
}

extension ServerStatus.Process {
    /// This process's resident memory and open descriptors, from /proc/self (zero where there is none).
    static func current() -> Self {
        var rss: UInt64 = 0
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = UInt64(fields[1]) { rss = pages * UInt64(sysconf(Int32(_SC_PAGESIZE))) }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return .init(residentBytes: rss, openFiles: fds)
    }
}
