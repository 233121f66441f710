import NIOCore

/// The flows of a datagram relay: one per peer, each carried by a port of its own at the far end
/// (so replies find their way back to the right peer). Pure: the relay opens and closes the ports
/// and passes the time in; this decides what happens to each datagram.
///
/// A flow starts when its peer's first datagram arrives: the relay opens its port and the datagrams
/// that arrive meanwhile wait in one bounded backlog. A flow without traffic either way for
/// `idleTimeout` is closed by `sweep(now:)`. At most `maxFlows` flows exist at once: a new peer's
/// datagrams beyond that are dropped (and counted) until a flow ends, so the senders of one relay
/// hold a bounded share of the far end's ports. `Handle` is whatever the relay needs to reach an
/// open flow's port.
public struct DatagramFlowTable<Peer: Hashable, Handle> {
    /// What the relay does with a datagram that arrived from a peer.
    public enum Arrival {
        /// The peer's first datagram: open a port for the flow, then call `opened` or `openFailed`.
        /// The datagram waits in the flow's backlog.
        case open(DatagramFlowID)
        /// The flow's port is being opened; the datagram waits in its backlog.
        case queued
        /// The flow is open: send the datagram on its port.
        case send(Handle)
        /// Dropped (and counted in `drops`).
        case dropped(DatagramDrops.Reason)
        /// A new peer while the table holds `limits.maxFlows` flows: dropped and counted as
        /// `flowLimit`. `log` is true for the first such drop in `limits.flowLimitLogInterval`, so
        /// the relay says so once per burst, not once per datagram.
        case overFlowLimit(log: Bool)
    }

    /// A flow the table let go: the relay closes its port, if it had one.
    public struct Closed {
        public var id: DatagramFlowID
        public var peer: Peer
        public var handle: Handle?
    }

    fileprivate enum State {
        case opening(backlog: [ByteBuffer])
        case open(Handle)
    }

    fileprivate struct Flow {
        var id: DatagramFlowID
        var state: State
        var lastActive: NIODeadline
    }

    public let limits: DatagramFlowLimits
    /// Datagrams dropped by this table and by the relay using it (`drops.admit` is the size rule).
    public var drops = DatagramDrops()
    private var flows: [Peer: Flow] = [:]
    private var peers: [DatagramFlowID: Peer] = [:]
    private var nextID: UInt64 = 1
    /// When the relay was last told to log a drop for `maxFlows`.
    private var flowLimitLoggedAt: NIODeadline?

    public init(limits: DatagramFlowLimits = DatagramFlowLimits()) {
        precondition(limits.maxBacklog >= 1, "a flow keeps at least the datagram that started it")
        precondition(limits.maxFlows >= 1, "a relay carries at least one flow")
        self.limits = limits
    }

    public var count: Int { flows.count }

    public func contains(_ peer: Peer) -> Bool { flows[peer] != nil }

    /// The handle of an open flow; nil while it opens or once it is gone.
    public func handle(_ id: DatagramFlowID) -> Handle? {
        guard let peer = peers[id], case .open(let h) = flows[peer]?.state else { return nil }
        return h
    }

    public func peer(_ id: DatagramFlowID) -> Peer? { peers[id] }

    /// A copy of `bytes` in storage of its own size. A datagram read in a batch (`recvmmsg`) is a slice
    /// of the whole batch's receive buffer (a megabyte): kept as it is in a backlog, it would keep that
    /// buffer alive, and a flood of new flows would pin a megabyte per waiting datagram. Only the few
    /// datagrams that wait for a port are copied; a flow's later datagrams pass through untouched.
    static func owned(_ bytes: ByteBuffer) -> ByteBuffer {
        var copy = ByteBuffer()
        copy.reserveCapacity(bytes.readableBytes)
        copy.writeImmutableBuffer(bytes)
        return copy
    }

    /// A datagram arrived from `peer`.
    public mutating func arrived(_ bytes: ByteBuffer, from peer: Peer, now: NIODeadline) -> Arrival {
        guard var flow = flows[peer] else {
            guard flows.count < limits.maxFlows else {
                drops.count(.flowLimit)
                let log = flowLimitLoggedAt.map { now - $0 >= limits.flowLimitLogInterval } ?? true
                if log { flowLimitLoggedAt = now }
                return .overFlowLimit(log: log)
            }
            let id = DatagramFlowID(rawValue: nextID)
            nextID += 1
            flows[peer] = Flow(id: id, state: .opening(backlog: [Self.owned(bytes)]), lastActive: now)
            peers[id] = peer
            return .open(id)
        }
        flow.lastActive = now
        switch flow.state {
        case .open(let handle):
            flows[peer] = flow
            return .send(handle)
        case .opening(var backlog):
            guard backlog.count < limits.maxBacklog else {
                flows[peer] = flow
                drops.count(.backlogFull)
                return .dropped(.backlogFull)
            }
            // Drop the old state's reference first so the array is appended to in place.
            flow.state = .opening(backlog: [])
            backlog.append(Self.owned(bytes))
            flow.state = .opening(backlog: backlog)
            flows[peer] = flow
            return .queued
        }
    }

    /// The flow's port is open. Returns the backlog to send on it, in arrival order; nil when the
    /// flow was closed meanwhile: the relay closes the port it just opened.
    public mutating func opened(_ id: DatagramFlowID, handle: Handle, now: NIODeadline) -> [ByteBuffer]? {
        guard let peer = peers[id], var flow = flows[peer], case .opening(let backlog) = flow.state else { return nil }
        flow.state = .open(handle)
        flow.lastActive = now
        flows[peer] = flow
        return backlog
    }

    /// The flow's port could not be opened: the flow ends and its backlog is dropped. Returns its
    /// peer, nil when the flow was already gone.
    @discardableResult
    public mutating func openFailed(_ id: DatagramFlowID) -> Peer? {
        guard let peer = peers[id], let flow = flows[peer], case .opening(let backlog) = flow.state else { return nil }
        drops.count(.notOpened, backlog.count)
        flows[peer] = nil
        peers[id] = nil
        return peer
    }

    /// Traffic the other way (a reply) keeps a flow alive too.
    public mutating func touch(_ id: DatagramFlowID, now: NIODeadline) {
        guard let peer = peers[id] else { return }
        flows[peer]?.lastActive = now
    }

    /// Ends a flow (its port was closed from the far end, or its path went away).
    @discardableResult
    public mutating func remove(_ id: DatagramFlowID) -> Closed? {
        guard let peer = peers.removeValue(forKey: id), let flow = flows.removeValue(forKey: peer) else { return nil }
        return close(flow, peer)
    }

    /// Ends the flows idle for longer than `limits.idleTimeout`, opening ones included.
    public mutating func sweep(now: NIODeadline) -> [Closed] {
        let idle = flows.filter { now - $0.value.lastActive > limits.idleTimeout }
        return idle.map { peer, flow in
            flows[peer] = nil
            peers[flow.id] = nil
            return close(flow, peer)
        }
    }

    /// Ends every flow (the relay stops).
    public mutating func removeAll() -> [Closed] {
        let all = flows
        flows.removeAll()
        peers.removeAll()
        return all.map { close($0.value, $0.key) }
    }

    private mutating func close(_ flow: Flow, _ peer: Peer) -> Closed {
        switch flow.state {
        case .open(let handle):
            return Closed(id: flow.id, peer: peer, handle: handle)
        case .opening(let backlog):
            drops.count(.notOpened, backlog.count)
            return Closed(id: flow.id, peer: peer, handle: nil)
        }
    }
}

extension DatagramFlowTable: Sendable where Peer: Sendable, Handle: Sendable {}
extension DatagramFlowTable.State: Sendable where Handle: Sendable {}
extension DatagramFlowTable.Flow: Sendable where Handle: Sendable {}
extension DatagramFlowTable.Arrival: Sendable where Handle: Sendable {}
extension DatagramFlowTable.Closed: Sendable where Peer: Sendable, Handle: Sendable {}
