import NIOCore
import PosternWire

/// The ports of one mediator session (docs/protocol.md §5): which ids exist, what each one is, and
/// whether a request may go ahead. A pure value: requests, their completions and the time come in;
/// decisions (a port id, the handle to act on, or a `MediatorPortRefusal` for FAILED) come out.
/// `RemoteSocketAPI` does the socket work each decision calls for and stores its sockets here as
/// `Handles`, so a port's kind and its socket can never disagree.
///
/// Lifecycles (every port also ends by CLOSE, and all of them when the session ends):
/// - OPEN: `open` takes an id (`opening`) → `opened` as `reserved` (TCP) or `datagram` (UDP), or
///   `openFailed`. REDIRECT: `redirect` takes an id the same way → `opened` as `datagram`.
/// - CONNECT: `connect` on a `reserved` port, or with port id 0 on a new id, or (pipelined, §5.3) on
///   the new server-chosen id it names → `connecting` → `resolved` (the `--allow` list) → `connected`
///   (`stream`) or `connectFailed`. A pipelined port the server resets while it connects:
///   `pipelinedPortReset`, and `connected` then refuses.
/// - LISTEN: `listen` on a `reserved` port → `startingToListen` → `listening` (`listener`) or
///   `listenFailed`; each connection the listener accepts: `accept` (`opening`) → `accepted` (`stream`).
/// - A stream or datagram port that ends by itself: `released`.
public struct MediatorPortTable<Handles: MediatorPortHandles> {
    public enum Port {
        case opening
        case reserved(Handles.Reserved)
        case connecting
        /// Keeps the opened socket until the listener runs: CLOSE answers with its address.
        case startingToListen(Handles.Reserved)
        case stream(Handles.Stream)
        case listener(Handles.Listener)
        case datagram(Handles.Datagram)

        public var kind: MediatorPortKind {
            switch self {
            case .opening: return .opening
            case .reserved: return .reserved
            case .connecting: return .connecting
            case .startingToListen: return .startingToListen
            case .stream: return .stream
            case .listener: return .listener
            case .datagram: return .datagram
            }
        }
    }

    /// A CONNECT that may go ahead.
    public struct Connect {
        /// The connecting port: the one named, or a new one for port id 0.
        public var portID: UInt32
        /// The opened port's socket when one was named: it is closed, and the connection leaves from
        /// its address and port.
        public var from: Handles.Reserved?
    }

    public let limits: MediatorPortLimits
    public let policy: Policy
    private var ports: [UInt32: Port] = [:]
    /// Nil once every id of the mediator's range has been used: ids are never reused within a session
    /// (§5), so a late frame can never reach the wrong port.
    var nextPortID: UInt32? = 1
    /// Whether CONNECT may name a new server-chosen port id (the `pipelinedConnect` capability, §4.3).
    public let takesServerPortIDs: Bool
    /// The highest server-chosen id a CONNECT created so far: the server counts up and never reuses
    /// one, so an id at or below it is refused, whether its port still lives or not.
    public private(set) var lastServerPortID: UInt32 = PortIDRange.serverBit
    private var requestRate: TokenBucket
    /// CONNECTs between `connect` and their end (`resolved` refusing, `connected` or `connectFailed`),
    /// counting those whose port was closed meanwhile: their sockets still exist.
    public private(set) var pendingConnects = 0
    /// Requests refused by the rate limit this session (the mediator logs some of them).
    public private(set) var refusedForRate: UInt64 = 0
    /// The session ended: everything was released and nothing new is kept.
    public private(set) var isClosed = false

    /// The request rate starts with a full burst, so a fresh session may send one at once.
    public init(limits: MediatorPortLimits, policy: Policy, now: NIODeadline, takesServerPortIDs: Bool = false) {
        self.limits = limits
        self.policy = policy
        self.takesServerPortIDs = takesServerPortIDs
        let rate = Double(limits.maxRequestRate)
        self.requestRate = TokenBucket(rate: rate, burst: rate, now: now)
    }

    /// Ports held, of every kind (what `limits.maxPorts` bounds).
    public var count: Int { ports.count }
    public var portIDs: [UInt32] { ports.keys.sorted() }
    public subscript(portID: UInt32) -> Port? { ports[portID] }

    // MARK: - OPEN and REDIRECT

    /// OPEN: takes a new port id for the socket about to be bound at `address` (the policy decides
    /// whether that address may be bound).
    public mutating func open(at address: IPAddress, now: NIODeadline) -> Result<UInt32, MediatorPortRefusal> {
        if let refusal = admit(now: now) ?? mayBind(address) ?? mayCreatePort() { return .failure(refusal) }
        return .success(take())
    }

    /// The TCP socket of `open` is bound. False when it is no longer wanted (the session ended):
    /// close it.
    public mutating func opened(_ portID: UInt32, reserved: Handles.Reserved) -> Bool {
        finishOpening(portID, as: .reserved(reserved))
    }

    /// The UDP socket of `open` is bound. False when it is no longer wanted: close it.
    public mutating func opened(_ portID: UInt32, datagram: Handles.Datagram) -> Bool {
        finishOpening(portID, as: .datagram(datagram))
    }

    /// The socket of `open` could not be bound: its id is skipped, never handed out again.
    public mutating func openFailed(_ portID: UInt32) {
        if case .opening = ports[portID] { ports[portID] = nil }
    }

    /// REDIRECT (§5.2): takes a new port id for the UDP socket about to be bound at `address`, like
    /// `open`, once `--allow-redirect` permits it; then `opened(_:datagram:)` or `openFailed`.
    /// Whatever LAN sender the socket hears from is relayed to the server, so it is opt-in.
    public mutating func redirect(at address: IPAddress, now: NIODeadline) -> Result<UInt32, MediatorPortRefusal> {
        if let refusal = admit(now: now) { return .failure(refusal) }
        guard policy.redirectEnabled else { return .failure(.redirectDenied) }
        if let refusal = mayBind(address) ?? mayCreatePort() { return .failure(refusal) }
        return .success(take())
    }

    // MARK: - CONNECT

    /// CONNECT on an opened port, or on a new one with port id 0. The port is `connecting` until
    /// `connected` or `connectFailed`; an unknown or other kind of port is left unchanged.
    public mutating func connect(portID: UInt32, now: NIODeadline) -> Result<Connect, MediatorPortRefusal> {
        if let refusal = admit(now: now) { return .failure(refusal) }
        guard pendingConnects < limits.maxPendingConnects else {
            return .failure(.pendingConnectLimit(inProgress: pendingConnects, limit: limits.maxPendingConnects))
        }
        let connect: Connect
        if portID == 0 {
            if let refusal = mayCreatePort() { return .failure(refusal) }
            connect = Connect(portID: take(as: .connecting), from: nil)
        } else if portID & PortIDRange.serverBit != 0 {
            // Without the capability no such id can exist: the answer of a mediator that predates it.
            guard takesServerPortIDs else { return .failure(.noSuchPort(portID)) }
            guard portID > lastServerPortID else { return .failure(.serverPortIDReused(portID, last: lastServerPortID)) }
            guard ports.count < limits.maxPorts else { return .failure(.portLimit(limits.maxPorts)) }
            lastServerPortID = portID
            ports[portID] = .connecting
            connect = Connect(portID: portID, from: nil)
        } else {
            switch ports[portID] {
            case nil, .opening?:
                return .failure(.noSuchPort(portID))
            case .reserved(let socket)?:
                ports[portID] = .connecting
                connect = Connect(portID: portID, from: socket)
            case .connecting?, .startingToListen?, .stream?, .listener?, .datagram?:
                return .failure(.notUnconnectedTCP(portID))
            }
        }
        pendingConnects += 1
        return .success(connect)
    }

    /// The destination of a CONNECT resolved to `address` (nil: not an IP address). Nil: connect
    /// now. A refusal ends the CONNECT: the port was closed meanwhile, or the policy denies the
    /// destination, judged by its normalised address (the port is gone, §5.3).
    public mutating func resolved(_ portID: UInt32, destination: Endpoint, address: IPAddress?) -> MediatorPortRefusal? {
        guard case .connecting = ports[portID] else {
            pendingConnects -= 1
            return goneWhileConnecting(portID)
        }
        guard let address, policy.allowsConnect(to: address, port: destination.port) else {
            pendingConnects -= 1
            ports[portID] = nil
            // Said apart from "not in the --allow list" when no rule could have opened the range,
            // since a broad rule that seems to cover it is the likely surprise.
            if let address, let range = ProtectedRange.containing(address), !policy.allow.contains(where: { $0.names(range) }) {
                return .protectedDestination(destination, address: address.normalized, range)
            }
            return .destinationDenied(destination)
        }
        return nil
    }

    /// The connection is up. A refusal when the port was closed meanwhile: close the connection and
    /// answer the CONNECT with it.
    public mutating func connected(_ portID: UInt32, stream: Handles.Stream) -> MediatorPortRefusal? {
        pendingConnects -= 1
        guard case .connecting = ports[portID] else { return goneWhileConnecting(portID) }
        ports[portID] = .stream(stream)
        return nil
    }

    /// Resolving or connecting failed: the port no longer exists (§5.3).
    public mutating func connectFailed(_ portID: UInt32) {
        pendingConnects -= 1
        if case .connecting = ports[portID] { ports[portID] = nil }
    }

    /// The server reset a pipelined port (or its kept frames broke a rule, §6.3) while it connected:
    /// the id is gone at once; the connect still ends through `resolved`, `connected` (which then
    /// refuses: close the socket) or `connectFailed`, and the CONNECT gets its one answer then.
    public mutating func pipelinedPortReset(_ portID: UInt32) {
        guard portID & PortIDRange.serverBit != 0, case .connecting = ports[portID] else { return }
        ports[portID] = nil
    }

    // MARK: - LISTEN

    /// LISTEN on an opened port: gives its socket to make the listener from.
    public mutating func listen(portID: UInt32, now: NIODeadline) -> Result<Handles.Reserved, MediatorPortRefusal> {
        if let refusal = admit(now: now) { return .failure(refusal) }
        guard policy.listenEnabled else { return .failure(.listenDenied) }
        switch ports[portID] {
        case nil, .opening?:
            return .failure(.noSuchPort(portID))
        case .reserved(let socket)?:
            ports[portID] = .startingToListen(socket)
            return .success(socket)
        case .connecting?, .startingToListen?, .stream?, .listener?, .datagram?:
            return .failure(.notUnconnectedTCP(portID))
        }
    }

    /// The listener runs. A refusal when the port was closed meanwhile (or the session ended): close
    /// the listener and answer the LISTEN with it.
    public mutating func listening(_ portID: UInt32, listener: Handles.Listener) -> MediatorPortRefusal? {
        guard case .startingToListen = ports[portID] else { return .closedBeforeListening(portID) }
        ports[portID] = .listener(listener)
        return nil
    }

    /// The kernel refused to listen: the port is released (§5.4).
    public mutating func listenFailed(_ portID: UInt32) {
        if case .startingToListen = ports[portID] { ports[portID] = nil }
    }

    /// A connection arrived on a listener: takes its new port id. A refusal (the listener is gone,
    /// or the session holds its limit of ports) means: close the connection.
    public mutating func accept(on listenerID: UInt32) -> Result<UInt32, MediatorPortRefusal> {
        guard case .listener = ports[listenerID] else { return .failure(.noSuchPort(listenerID)) }
        if let refusal = mayCreatePort() { return .failure(refusal) }
        return .success(take())
    }

    /// The accepted connection of `accept` relays as `stream`. False when it is no longer wanted.
    public mutating func accepted(_ portID: UInt32, stream: Handles.Stream) -> Bool {
        finishOpening(portID, as: .stream(stream))
    }

    // MARK: - Ending

    /// CLOSE: the port leaves the table and is returned for its socket to be closed. A port being
    /// opened is not known to the server yet, so it is no such port.
    public mutating func close(portID: UInt32) -> Result<Port, MediatorPortRefusal> {
        guard let port = ports[portID], port.kind != .opening else { return .failure(.noSuchPort(portID)) }
        ports[portID] = nil
        return .success(port)
    }

    /// A stream or datagram port ended by itself (both directions done, RESET, its socket closed):
    /// its id is gone. Other kinds end only through this table and are left alone.
    public mutating func released(_ portID: UInt32) {
        switch ports[portID] {
        case .stream?, .datagram?: ports[portID] = nil
        default: break
        }
    }

    /// The session ended: every port is returned for its socket to be closed, and sockets that
    /// complete later are not kept (`opened`, `accepted` say false; `connected`, `listening` refuse).
    public mutating func sessionClosed() -> [Port] {
        isClosed = true
        let all = ports.sorted { $0.key < $1.key }.map(\.value)
        ports.removeAll()
        return all
    }

    /// Why a connecting port is no longer there: a server-chosen one is gone by the server's RESET
    /// (§5.3, "Pipelined CONNECT"), any other by CLOSE (or the session's end).
    private func goneWhileConnecting(_ portID: UInt32) -> MediatorPortRefusal {
        portID & PortIDRange.serverBit != 0 ? .resetWhileConnecting(portID) : .closedWhileConnecting(portID)
    }

    // MARK: - Rules

    /// The request rate: OPEN, REDIRECT, CONNECT and LISTEN each take a token, even when refused later.
    private mutating func admit(now: NIODeadline) -> MediatorPortRefusal? {
        guard requestRate.take(now: now) else {
            refusedForRate += 1
            return .requestRate(limit: limits.maxRequestRate)
        }
        return nil
    }

    private func mayBind(_ address: IPAddress) -> MediatorPortRefusal? {
        guard policy.allowsBind(to: address) else {
            return ProtectedRange.containing(address).map { .bindDenied(address.normalized, $0) }
        }
        return nil
    }

    private func mayCreatePort() -> MediatorPortRefusal? {
        guard ports.count < limits.maxPorts else { return .portLimit(limits.maxPorts) }
        guard nextPortID != nil else { return .portIDsExhausted }
        return nil
    }

    /// A new port id; `mayCreatePort` said there is one.
    private mutating func take(as port: Port = .opening) -> UInt32 {
        guard let id = nextPortID else { preconditionFailure("take() without mayCreatePort()") }
        // A limit, not a wrap: the ids above belong to the server (§5, "Port ids").
        nextPortID = id >= PortIDRange.lastMediatorID ? nil : id + 1
        ports[id] = port
        return id
    }

    private mutating func finishOpening(_ portID: UInt32, as port: Port) -> Bool {
        guard !isClosed, case .opening = ports[portID] else { return false }
        ports[portID] = port
        return true
    }
}
