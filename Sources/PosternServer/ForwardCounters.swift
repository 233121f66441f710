import PosternTunnel
import PosternWire

/// What one forward counted, read by the admin API (`/v1/status`, `/metrics`) when asked. All of it
/// is owned by the server's event loop, like the forward: the data path takes no lock and touches
/// no atomic. Open connections' bytes are read from their relays at request time (so a long
/// transfer shows while it runs, not only when it closes); a closed relay's bytes are added here once.
final class ForwardCounters {
    /// Whether what the forward listens on is bound: its socket on the server, or its port on the
    /// mediator's current session.
    var listening = false
    /// Why the forward is not serving, when it failed (bind refused, the mediator refused its port).
    var failure: String?
    private(set) var connectionsTotal: UInt64 = 0
    private var live: [ObjectIdentifier: StreamRelay] = [:]
    private var closedToMediator: UInt64 = 0
    private var closedFromMediator: UInt64 = 0
    /// Connections turned away because the mediator was not connected.
    private(set) var refusals: UInt64 = 0
    /// Connections (UDP: datagrams) refused by policy: the forward's own `allow=` list at accept,
    /// or the mediator's (`--allow` and friends) at connect.
    private(set) var policyDenials: UInt64 = 0
    /// Datagrams of a `udp:` forward dropped because its `rate=` was spent.
    private(set) var rateLimitDrops: UInt64 = 0
    /// Connections that failed otherwise (target unreachable, refused, timed out, session gone).
    private(set) var errors: UInt64 = 0
    /// Datagram forwards count their payload bytes as they pass (a plain add on the loop).
    var datagramBytesToMediator: UInt64 = 0
    var datagramBytesFromMediator: UInt64 = 0
    /// Datagram forwards: flows open now, read from the forward's flow table when asked.
    var openFlows: () -> Int = { 0 }

    /// A relayed connection began; its bytes count from now on.
    func opened(_ relay: StreamRelay) {
        connectionsTotal &+= 1
        live[ObjectIdentifier(relay)] = relay
    }

    /// The relay is gone; its bytes move to the closed totals (once, however often it is told).
    func closed(_ relay: StreamRelay) {
        guard live.removeValue(forKey: ObjectIdentifier(relay)) != nil else { return }
        closedToMediator &+= relay.bytesToTunnel
        closedFromMediator &+= relay.bytesFromTunnel
    }

    /// A datagram forward opened a flow (its connections are flows).
    func flowOpened() { connectionsTotal &+= 1 }

    func refused() { refusals &+= 1 }

    /// The forward's `allow=` list turned a user away.
    func deniedBySource() { policyDenials &+= 1 }

    func droppedByRate() { rateLimitDrops &+= 1 }

    /// A connection that was not relayed: the mediator's policy, or anything else.
    func failed(_ error: Error) {
        if let e = error as? OperationError, e.code == .deniedByPolicy || e.code == .permissionDenied {
            policyDenials &+= 1
        } else {
            errors &+= 1
        }
    }

    var connectionsOpen: Int { live.count + openFlows() }

    var bytesToMediator: UInt64 {
        live.values.reduce(closedToMediator &+ datagramBytesToMediator) { $0 &+ $1.bytesToTunnel }
    }

    var bytesFromMediator: UInt64 {
        live.values.reduce(closedFromMediator &+ datagramBytesFromMediator) { $0 &+ $1.bytesFromTunnel }
    }
}
