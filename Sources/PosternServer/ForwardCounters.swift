import Atomics
import NIOConcurrencyHelpers
import PosternTunnel
import PosternWire

/// What one forward counted, read by the admin API (`/v1/status`, `/metrics`) when asked. Open
/// connections' bytes are read from their relays at request time (so a long transfer shows while it
/// runs, not only when it closes); a closed relay's bytes are added here once.
///
/// The per-connection counts are told from the loop of the mediator's session (`--threads`) and read
/// on the control loop: they sit behind one lock, taken once per connection event, never per packet
/// (a relay's bytes are its own relaxed atomics). Datagram forwards count their bytes on the loop of
/// the mediator's session too, in relaxed atomics (one loop writes them at a time); `listening` and
/// `failure` change once per session, behind the lock.
final class ForwardCounters {
    private let lock = NIOLock()
    /// Whether what the forward listens on is bound: its socket on the server, or its port on the
    /// mediator's current session.
    var listening: Bool {
        get { lock.withLock { _listening } }
        set { lock.withLock { _listening = newValue } }
    }
    private var _listening = false
    /// Why the forward is not serving, when it failed (bind refused, the mediator refused its port).
    var failure: String? {
        get { lock.withLock { _failure } }
        set { lock.withLock { _failure = newValue } }
    }
    private var _failure: String?
    private var _connectionsTotal: UInt64 = 0
    var connectionsTotal: UInt64 { lock.withLock { _connectionsTotal } }
    private var live: [ObjectIdentifier: StreamRelay] = [:]
    private var closedToMediator: UInt64 = 0
    private var closedFromMediator: UInt64 = 0
    /// Connections turned away because the mediator was not connected.
    private var _refusals: UInt64 = 0
    var refusals: UInt64 { lock.withLock { _refusals } }
    /// Connections (UDP: datagrams) refused by policy: the forward's own `allow=` list at accept,
    /// or the mediator's (`--allow` and friends) at connect.
    private var _policyDenials: UInt64 = 0
    var policyDenials: UInt64 { lock.withLock { _policyDenials } }
    /// Datagrams of a `udp:` forward dropped because its `rate=` was spent.
    private var _rateLimitDrops: UInt64 = 0
    var rateLimitDrops: UInt64 { lock.withLock { _rateLimitDrops } }
    /// Connections that failed otherwise (target unreachable, refused, timed out, session gone).
    private var _errors: UInt64 = 0
    var errors: UInt64 { lock.withLock { _errors } }
    /// Datagram forwards count their payload bytes as they pass (a relaxed add on the session's loop).
    private let datagramsToMediator = ManagedAtomic<UInt64>(0)
    private let datagramsFromMediator = ManagedAtomic<UInt64>(0)
    var datagramBytesToMediator: UInt64 {
        get { datagramsToMediator.load(ordering: .relaxed) }
        set { datagramsToMediator.store(newValue, ordering: .relaxed) }
    }
    var datagramBytesFromMediator: UInt64 {
        get { datagramsFromMediator.load(ordering: .relaxed) }
        set { datagramsFromMediator.store(newValue, ordering: .relaxed) }
    }
    func datagramToMediator(_ bytes: Int) { datagramsToMediator.wrappingIncrement(by: UInt64(bytes), ordering: .relaxed) }
    func datagramFromMediator(_ bytes: Int) { datagramsFromMediator.wrappingIncrement(by: UInt64(bytes), ordering: .relaxed) }
    /// Datagram forwards: flows open now, read when asked from any loop (set once, before start).
    var openFlows: () -> Int = { 0 }

    /// A relayed connection began; its bytes count from now on.
    func opened(_ relay: StreamRelay) {
        lock.withLock {
            _connectionsTotal &+= 1
            live[ObjectIdentifier(relay)] = relay
        }
    }

    /// The relay is gone; its bytes move to the closed totals (once, however often it is told).
    func closed(_ relay: StreamRelay) {
        lock.withLock {
            guard live.removeValue(forKey: ObjectIdentifier(relay)) != nil else { return }
            closedToMediator &+= relay.bytesToTunnel
            closedFromMediator &+= relay.bytesFromTunnel
        }
    }

    /// A datagram forward opened a flow (its connections are flows).
    func flowOpened() { lock.withLock { _connectionsTotal &+= 1 } }

    func refused() { lock.withLock { _refusals &+= 1 } }

    /// The forward's `allow=` list turned a user away.
    func deniedBySource() { lock.withLock { _policyDenials &+= 1 } }

    /// The mediator's policy dropped `n` datagrams of a `udp:` forward (DENIED, docs/protocol.md §6.5).
    func deniedByMediator(_ n: UInt64) { lock.withLock { _policyDenials &+= n } }

    func droppedByRate() { lock.withLock { _rateLimitDrops &+= 1 } }

    /// A connection that was not relayed: the mediator's policy, or anything else.
    func failed(_ error: Error) {
        lock.withLock {
            if let e = error as? OperationError, e.code == .deniedByPolicy || e.code == .permissionDenied {
                _policyDenials &+= 1
            } else {
                _errors &+= 1
            }
        }
    }

    var connectionsOpen: Int { lock.withLock { live.count } + openFlows() }

    var bytesToMediator: UInt64 {
        lock.withLock { live.values.reduce(closedToMediator) { $0 &+ $1.bytesToTunnel } } &+ datagramBytesToMediator
    }

    var bytesFromMediator: UInt64 {
        lock.withLock { live.values.reduce(closedFromMediator) { $0 &+ $1.bytesFromTunnel } } &+ datagramBytesFromMediator
    }
}
