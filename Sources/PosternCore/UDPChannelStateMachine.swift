import NIOCore
import PosternWire

/// One UDP channel of a session, at one end (docs/protocol.md §9.7-§9.9): it seals what this end sends,
/// opens, checks and counts what arrives, keeps the NAT mapping alive with keepalives, says when the
/// channel carries datagrams both ways (`up`) and when it stopped (`down`, the session's datagrams go
/// back to the TCP channel), and, on the server, follows the mediator's address when its NAT mapping
/// moves. Pure: time comes in as an argument, and every effect is an action for the I/O around it.
///
/// `Address` is whatever the I/O uses for a UDP peer (NIO's `SocketAddress`); the machine only compares
/// addresses.
///
/// The machine lives as long as its session, down or up: its counter must never start again under the
/// session's keys, or a nonce would repeat (§9.4).
public struct UDPChannelStateMachine<Address: Hashable & Sendable>: Sendable {
    public typealias Action = UDPChannelAction<Address>

    public let role: Proof.Role
    public let channelID: UInt16
    public let settings: UDPChannelSettings
    private let cipher: UDPChannelCipher
    private var counter: UDPChannelCounter
    private var window = ReplayWindow()
    /// Where this end sends: the server's service port (mediator, fixed), or the address of the
    /// newest authenticated datagram (server; nil until the first).
    public private(set) var peerAddress: Address?
    /// When the last authenticated datagram arrived.
    public private(set) var lastHeard: NIODeadline?
    /// What the peer's latest PING said (or a PONG showed): that it hears this end.
    private var peerHears = false
    /// Whether datagrams go on this channel: this end hears the peer and the peer hears this end.
    public private(set) var isUp = false
    private var nextKeepalive: NIODeadline
    /// When the oldest PING that no PONG has answered yet was sent (§9.7, "Silence").
    private var unansweredSince: NIODeadline?
    /// When to repeat an unanswered PING while the answer timeout runs.
    private var nextProbe: NIODeadline?
    /// A datagram was sealed with the peer silent for `probeAfter`: the next tick sends a PING.
    public private(set) var probeDue = false
    /// When this end last sent the peer anything: an end that only receives (a one-way flood) PINGs
    /// every `probeAfter`, so its peer, whose probes may drown in that flood, never finds it silent.
    private var lastSent: NIODeadline?
    /// The round-trip time of the latest keepalive answered.
    public private(set) var roundTrip: TimeAmount?
    public private(set) var counters = UDPChannelCounters()

    /// `peerAddress` is the server's service port on the mediator, nil on the server. The first tick
    /// pings at once (the mediator opens the NAT mapping with it). `counter` is for tests that start
    /// near the top.
    public init(
        role: Proof.Role, channelID: UInt16, sessionID: UInt64, keys: SessionKeys, settings: UDPChannelSettings = .init(),
        peerAddress: Address?, now: NIODeadline, counter: UDPChannelCounter = .init()
    ) {
        precondition(settings.keepaliveInterval.nanoseconds > 0 && settings.deadTimeout.nanoseconds > 0)
        self.role = role
        self.channelID = channelID
        self.settings = settings
        self.cipher = UDPChannelCipher(keys: keys, sessionID: sessionID)
        self.counter = counter
        self.peerAddress = peerAddress
        self.nextKeepalive = now
    }

    /// Whether an authenticated datagram arrived within the dead timeout.
    public func isHearing(at now: NIODeadline) -> Bool {
        guard let lastHeard else { return false }
        return now - lastHeard < settings.deadTimeout
    }

    /// Whether a PING has gone unanswered for the answer timeout with nothing at all heard from the
    /// peer since it was sent: the path is gone, whatever the dead timeout says. A peer that sends
    /// anything (datagrams of a busy but lossy path) is not silent.
    public func isSilent(at now: NIODeadline) -> Bool {
        guard let unansweredSince, now - unansweredSince >= settings.answerTimeout else { return false }
        guard let lastHeard else { return true }
        return lastHeard < unansweredSince
    }

    /// A datagram that arrived from `source` (the whole UDP payload). Checked in order: size, kind,
    /// session and channel, source (mediator), replay window, authentication, message (§9.8); only a
    /// datagram that passes all but the last changes anything but a counter.
    // Specialized here for the address type the I/O layer uses: called across modules, the generic
    // code otherwise looks up type metadata at run time for every datagram (seen in the TUN profile).
    @_specialize(exported:true,where Address == SocketAddress)
    public mutating func receive(_ datagram: ByteBuffer, from source: Address, now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        receive(datagram, from: source, now: now, into: &actions)
        return actions
    }

    /// `receive`, appending the actions to `actions`: the I/O keeps one array for every datagram
    /// instead of making one per datagram (TUN mode receives one per packet).
    @_specialize(exported:true,where Address == SocketAddress)
    public mutating func receive(_ datagram: ByteBuffer, from source: Address, now: NIODeadline, into actions: inout [Action]) {
        var reader = datagram
        let header: UDPChannelHeader
        do {
            header = try reader.readUDPChannelHeader()
        } catch UDPChannelError.tooLarge {
            counters.tooLarge &+= 1
            return
        } catch UDPChannelError.truncated {
            counters.truncated &+= 1
            return
        } catch {
            counters.stray &+= 1
            return
        }
        guard header.sessionID == cipher.sessionID, header.channelID == channelID,
            role == .server || source == peerAddress
        else {
            counters.stray &+= 1
            return
        }
        switch window.check(header.counter) {
        case .fresh: break
        case .duplicate, .tooOld:
            counters.replayed &+= 1
            return
        case .outOfRange:
            counters.forged &+= 1
            return
        }
        guard var plain = cipher.open(datagram, header: header) else {
            counters.forged &+= 1
            return
        }
        guard case .fresh(let newest) = window.accept(header.counter) else {
            counters.replayed &+= 1
            return
        }
        counters.received &+= 1
        let wasHearing = isHearing(at: now)
        lastHeard = now
        // Only the newest authenticated datagram moves the address: a replay never opens as fresh, and
        // one that arrives late from the old address after a move is delivered without moving back.
        if role == .server, source != peerAddress, newest {
            let old = peerAddress
            peerAddress = source
            if old != nil { counters.migrations &+= 1 }
            actions.append(.migrated(from: old, to: source))
        }
        do {
            let message = try plain.readUDPChannelMessage()
            switch message {
            case .ping(let timestamp, let receiving):
                peerHears = receiving
                if let pong = sealed(.pong(echo: timestamp)) {
                    actions.append(pong)
                    lastSent = now
                }
            case .pong(let echo):
                peerHears = true
                let sent = NIODeadline.uptimeNanoseconds(echo)
                if sent <= now { roundTrip = now - sent }
                if let unansweredSince, sent >= unansweredSince {
                    self.unansweredSince = nil
                    nextProbe = nil
                }
            case .datagram, .packet:
                counters.delivered &+= 1
                actions.append(.deliver(message))
                if lastSent.map({ now - $0 >= settings.probeAfter }) ?? true, let ping = keepalive(now: now) { actions.append(ping) }
            }
        } catch {
            counters.malformed &+= 1
        }
        // The peer learns at once that this end hears it again, rather than at the next keepalive.
        if !wasHearing, let ping = keepalive(now: now) { actions.append(ping) }
        updateUp(now: now, into: &actions)
    }

    /// Keepalives and the dead timeout; call at `nextDeadline`.
    public mutating func tick(now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        if !isHearing(at: now) { peerHears = false }
        if probeDue {
            probeDue = false
            if unansweredSince == nil, let ping = keepalive(now: now) {
                actions.append(ping)
                nextProbe = now + settings.probeAfter
            }
        }
        if isSilent(at: now) {
            if peerHears || isUp {
                // Down now, and the peer is told at once (this PING says "not receiving"), so it
                // stops sending into the same hole even while it still hears this end.
                peerHears = false
                nextProbe = nil
                updateUp(now: now, into: &actions)
                if let ping = keepalive(now: now) { actions.append(ping) }
            }
        } else if let probe = nextProbe, now >= probe {
            // Repeated while the answer timeout runs: one lost PING or PONG is not silence. Past it
            // (the peer is heard, it does not answer) the peer's own PINGs will say what it hears.
            if let unansweredSince, now - unansweredSince < settings.answerTimeout {
                nextProbe = now + settings.probeAfter
                if let ping = keepalive(now: now) { actions.append(ping) }
            } else {
                nextProbe = nil
            }
        }
        updateUp(now: now, into: &actions)
        if now >= nextKeepalive {
            nextKeepalive = now + settings.keepaliveInterval
            if let ping = keepalive(now: now) { actions.append(ping) }
        }
        return actions
    }

    /// When `tick` should next be called.
    public var nextDeadline: NIODeadline {
        if probeDue { return .uptimeNanoseconds(0) }
        guard isUp || peerHears, let lastHeard else { return nextKeepalive }
        var next = min(nextKeepalive, lastHeard + settings.deadTimeout)
        // Silence is possible only while nothing was heard since the unanswered PING; once something
        // was, that deadline has no meaning (and, in the past, would make the caller tick at once).
        if let unansweredSince, lastHeard < unansweredSince { next = min(next, unansweredSince + settings.answerTimeout) }
        if let nextProbe { next = min(next, nextProbe) }
        return next
    }

    /// Seals a DATAGRAM or PACKET message to the peer if the channel is up; otherwise the caller sends
    /// it on the TCP channel. Each message goes on one path only, never both (§9.9).
    @_specialize(exported:true,where Address == SocketAddress)
    public mutating func seal(_ message: UDPChannelMessage, now: NIODeadline) -> UDPChannelSendResult<Address> {
        guard isUp, isHearing(at: now) else { return .notUp }
        guard UDPChannelHeader.overhead + message.encodedLength <= UDPChannelHeader.maxDatagramSize else {
            counters.oversize &+= 1
            return .tooLarge
        }
        guard case .send(let bytes, let to) = sealed(message) else { return .notUp }
        lastSent = now
        // Nothing heard from the peer for a while: check that this datagram's path still works
        // (§9.7, "Probe"). The caller ticks when `probeDue` is set.
        if unansweredSince == nil, let lastHeard, now - lastHeard >= settings.probeAfter { probeDue = true }
        return .send(bytes, to: to)
    }

    private mutating func keepalive(now: NIODeadline) -> Action? {
        let receiving = isHearing(at: now) && !isSilent(at: now)
        guard let ping = sealed(.ping(timestamp: now.uptimeNanoseconds, receiving: receiving)) else { return nil }
        counters.keepalivesSent &+= 1
        lastSent = now
        if unansweredSince == nil { unansweredSince = now }
        return ping
    }

    /// The message sealed for the peer's address with the next counter; nil without an address, with
    /// the counter exhausted, or when it does not fit.
    private mutating func sealed(_ message: UDPChannelMessage) -> Action? {
        guard let to = peerAddress, !counter.isExhausted,
            UDPChannelHeader.overhead + message.encodedLength <= UDPChannelHeader.maxDatagramSize,
            let value = counter.take(),
            let bytes = cipher.seal(message, channelID: channelID, counter: value)
        else { return nil }
        counters.sent &+= 1
        return .send(bytes, to: to)
    }

    private mutating func updateUp(now: NIODeadline, into actions: inout [Action]) {
        let up = isHearing(at: now) && peerHears && peerAddress != nil && !counter.isExhausted
        guard up != isUp else { return }
        isUp = up
        actions.append(up ? .up : .down)
    }
}
