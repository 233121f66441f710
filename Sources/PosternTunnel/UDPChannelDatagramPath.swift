import Logging
import NIOCore
import PosternCore
import PosternWire

/// The datagram path of a session that has UDP channels (docs/protocol.md §9): each datagram goes on a
/// UDP channel while one is up at this end, otherwise on the fallback path (DATAGRAM frames on the TCP
/// channel, `TunnelDatagramPath`). Each datagram is offered to one path only, never both (§9.9). A
/// datagram that does not fit one channel datagram, or whose peer is a name (a channel DATAGRAM carries
/// addresses only), also takes the fallback. What arrives on either path reaches the same receivers.
///
/// The channel machines (`UDPChannelStateMachine`) decide; this class performs their actions: it
/// writes their datagrams through `transmit` (the UDP socket's writer, set by whoever owns the socket),
/// hands their DATAGRAM messages to the port's receiver, and ticks them at their deadlines. The server
/// makes a channel when the first authenticated datagram names it (at most `maxChannels`); the
/// mediator opens channel 1 itself (`openChannel`). Lives on the event loop of its session.
public final class UDPChannelDatagramPath: DatagramPath {
    public typealias Machine = UDPChannelStateMachine<SocketAddress>

    public let fallback: DatagramPath
    public let role: Proof.Role
    public let settings: UDPChannelSettings
    /// Channels one session may hold (server): datagrams naming more are counted as stray.
    public var maxChannels = 4
    private let eventLoop: EventLoop
    private let now: () -> NIODeadline
    private var logger: Logger
    private var sessionID: UInt64?
    private var keys: SessionKeys?
    private var transmit: ((ByteBuffer, SocketAddress) -> Void)?
    private var channels: [UInt16: Channel] = [:]
    private var receivers: [UInt32: WeakReceiver] = [:]
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var closed = false
    /// Where `received` collects a datagram's actions (see there).
    private var actionScratch: [Machine.Action] = []
    /// Drops no channel machine saw: datagrams naming a channel this session does not hold that did
    /// not authenticate (or past `maxChannels`).
    public private(set) var strayDatagrams: UInt64 = 0
    /// Datagrams sent on the fallback path while a channel was up because they did not fit one.
    public private(set) var fallbackWhileUp: UInt64 = 0
    /// Payload bytes of the DATAGRAM messages this end sealed onto a channel and of those a channel
    /// delivered (opened, not replayed): the UDP channel's share of the session's IN/OUT, counted as
    /// the TCP channel counts DATA (the datagram, not the sealed bytes around it).
    public private(set) var payloadBytesOut: UInt64 = 0
    public private(set) var payloadBytesIn: UInt64 = 0

    private struct WeakReceiver {
        weak var receiver: DatagramPathReceiver?
    }

    /// A channel's machine, boxed: the path reads and changes it in place for every packet, where a
    /// machine held in the dictionary itself would be copied out (a retain of each of its references)
    /// whenever it is only looked at.
    private final class Channel {
        var machine: Machine
        init(_ machine: Machine) { self.machine = machine }
    }

    /// `now` is the clock of the channel machines; timers are scheduled on `eventLoop` at its deadlines.
    public init(
        role: Proof.Role, fallback: DatagramPath, settings: UDPChannelSettings = .init(), eventLoop: EventLoop, logger: Logger,
        now: @escaping () -> NIODeadline
    ) {
        self.role = role
        self.fallback = fallback
        self.settings = settings
        self.eventLoop = eventLoop
        self.logger = logger
        self.now = now
    }

    // MARK: - Channels

    /// The session is established: channels of `sessionID` under `keys` may start, their datagrams
    /// written by `transmit`.
    public func start(sessionID: UInt64, keys: SessionKeys, transmit: @escaping (ByteBuffer, SocketAddress) -> Void) {
        guard !closed else { return }
        self.sessionID = sessionID
        self.keys = keys
        self.transmit = transmit
    }

    /// Mediator: opens channel `id` to the server's service port; it pings at once.
    public func openChannel(_ id: UInt16, to server: SocketAddress) {
        guard !closed, let sessionID, let keys, channels[id] == nil else { return }
        channels[id] = Channel(
            Machine(role: role, channelID: id, sessionID: sessionID, keys: keys, settings: settings, peerAddress: server, now: now()))
        tick()
    }

    /// A UDP payload that arrived from `source` for this session (the server routes by session id).
    public func received(_ datagram: ByteBuffer, from source: SocketAddress) {
        guard !closed, let sessionID, let keys else {
            strayDatagrams &+= 1
            return
        }
        let time = now()
        guard let channelID = datagram.getInteger(at: datagram.readerIndex + 2, as: UInt16.self) else {
            strayDatagrams &+= 1
            return
        }
        // One array for every datagram's actions, taken out while in use (a receiver that sends
        // while its packet is delivered finds it empty and does not disturb this one).
        var actions = actionScratch
        actionScratch = []
        defer {
            actions.removeAll(keepingCapacity: true)
            actionScratch = actions
        }
        // Mutated in place (`Channel`): a copy taken out of the dictionary would share the replay
        // window's storage with the one left in it, and the window's update would copy it.
        if let channel = channels[channelID] {
            channel.machine.receive(datagram, from: source, now: time, into: &actions)
        } else {
            // The server keeps a channel only once a datagram naming it authenticates: a forger cannot
            // take the session's channel slots, and a machine that never sent holds no counter to keep.
            guard role == .server, channels.count < maxChannels else {
                strayDatagrams &+= 1
                return
            }
            var machine = Machine(
                role: role, channelID: channelID, sessionID: sessionID, keys: keys, settings: settings, peerAddress: nil, now: time)
            machine.receive(datagram, from: source, now: time, into: &actions)
            guard machine.counters.received > 0 else {
                strayDatagrams &+= 1
                return
            }
            channels[channelID] = Channel(machine)
            logger.info("UDP channel \(channelID) of session \(sessionID) opened from \(source)")
        }
        perform(actions, channelID: channelID)
        schedule()
    }

    /// The session ended: no more channel datagrams; timers stop.
    public func close() {
        closed = true
        timer?.cancel()
        timer = nil
        transmit = nil
    }

    /// Whether a channel is up at this end: datagrams go on it.
    public var isUDPUp: Bool { upChannel != nil }

    /// The counters of every channel, summed, with the stray datagrams no channel saw.
    public var counters: UDPChannelCounters {
        var total = UDPChannelCounters()
        for channel in channels.values {
            let c = channel.machine.counters
            total.sent &+= c.sent
            total.received &+= c.received
            total.delivered &+= c.delivered
            total.keepalivesSent &+= c.keepalivesSent
            total.forged &+= c.forged
            total.replayed &+= c.replayed
            total.truncated &+= c.truncated
            total.tooLarge &+= c.tooLarge
            total.stray &+= c.stray
            total.malformed &+= c.malformed
            total.migrations &+= c.migrations
            total.oversize &+= c.oversize
        }
        total.stray &+= strayDatagrams
        return total
    }

    /// The latest keepalive round trip measured on a channel that is up (nil before the first).
    public var roundTrip: TimeAmount? {
        channels.keys.sorted().lazy.compactMap { self.channels[$0].flatMap { $0.machine.isUp ? $0.machine.roundTrip : nil } }.first
    }

    /// The channel ids this session holds.
    public var channelIDs: [UInt16] { channels.keys.sorted() }

    private var upChannel: Channel? { upChannel(at: now()) }

    private func upChannel(at time: NIODeadline) -> Channel? {
        // One channel is the rule: no sorted copy of the keys per packet then.
        if channels.count == 1, let channel = channels.values.first {
            return channel.machine.isUp && channel.machine.isHearing(at: time) ? channel : nil
        }
        for id in channels.keys.sorted() {
            if let channel = channels[id], channel.machine.isUp, channel.machine.isHearing(at: time) { return channel }
        }
        return nil
    }

    private func perform(_ actions: [Machine.Action], channelID: UInt16) {
        for action in actions {
            switch action {
            case .send(let bytes, let to):
                transmit?(bytes, to)
            case .deliver(let message):
                if case .packet(let bytes) = message {
                    packetReceiver?(bytes)
                    continue
                }
                guard case .datagram(let portID, let peer, let bytes) = message else { continue }
                payloadBytesIn &+= UInt64(bytes.readableBytes)
                receivers[portID]?.receiver?.datagramReceived(bytes, peer: peer, portID: portID)
            case .up:
                logger.info("UDP channel \(channelID) of session \(sessionID ?? 0) is up: datagrams take it")
            case .down:
                logger.notice(
                    "UDP channel \(channelID) of session \(sessionID ?? 0) is down (\(downReason(channelID))): datagrams take the TCP channel"
                )
            case .migrated(let from, let to):
                if let from { logger.info("UDP channel \(channelID) of session \(sessionID ?? 0) moved from \(from) to \(to)") }
            }
        }
    }

    /// Why a channel went down, for the log (docs/protocol.md §9.7).
    private func downReason(_ channelID: UInt16) -> String {
        let time = now()
        guard let machine = channels[channelID]?.machine else { return "closed" }
        if machine.isSilent(at: time) {
            return "a keepalive unanswered for \(settings.answerTimeout.nanoseconds / 1_000_000) ms, nothing heard since"
        }
        if !machine.isHearing(at: time) { return "nothing heard for \(settings.deadTimeout.nanoseconds / 1_000_000) ms" }
        return "the peer hears nothing from this end"
    }

    // MARK: - Timers

    private func tick() {
        guard !closed else { return }
        let time = now()
        for id in channels.keys.sorted() {
            guard let channel = channels[id], channel.machine.nextDeadline <= time else { continue }
            let actions = channel.machine.tick(now: time)
            perform(actions, channelID: id)
        }
        schedule()
    }

    /// Keeps one timer at the earliest channel deadline; a timer that fires early just reschedules.
    private func schedule() {
        // A loop, not `map(...).min()`: this runs for every datagram received, and the array would
        // be an allocation each time.
        var earliest: NIODeadline?
        for channel in channels.values {
            let d = channel.machine.nextDeadline
            if earliest.map({ d < $0 }) ?? true { earliest = d }
        }
        guard !closed, let next = earliest else { return }
        if let timerDeadline, timer != nil, timerDeadline <= next { return }
        timer?.cancel()
        timerDeadline = next
        // The machines' clock may be another than the loop's (tests): wait the difference.
        let delay = next - now()
        timer = eventLoop.scheduleTask(in: delay.nanoseconds > 0 ? delay : .zero) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            self.tick()
        }
    }

    // MARK: - DatagramPath

    public var isOpen: Bool { fallback.isOpen }
    public var canSend: Bool { isUDPUp || fallback.canSend }

    /// The larger of the two limits: a datagram too large for the channel takes the fallback.
    public func maxDatagramSize(for peer: Endpoint) -> Int {
        guard isUDPUp, case .ip = peer.host else { return fallback.maxDatagramSize(for: peer) }
        return max(UDPChannelMessage.maxDatagramBytes(for: peer), fallback.maxDatagramSize(for: peer))
    }

    public func send(portID: UInt32, peer: Endpoint, bytes: ByteBuffer) {
        if let channel = upChannel, case .ip = peer.host, bytes.readableBytes <= UDPChannelMessage.maxDatagramBytes(for: peer) {
            let result = channel.machine.seal(.datagram(portID: portID, peer: peer, bytes: bytes), now: now())
            if case .send(let datagram, let to) = result {
                payloadBytesOut &+= UInt64(bytes.readableBytes)
                transmit?(datagram, to)
                if channel.machine.probeDue { tick() }
                return
            }
        } else if isUDPUp {
            fallbackWhileUp &+= 1
        }
        // Not up (or too large, or a name): the TCP channel, if it can take it now.
        guard fallback.canSend, bytes.readableBytes <= fallback.maxDatagramSize(for: peer) else { return }
        fallback.send(portID: portID, peer: peer, bytes: bytes)
    }

    // MARK: - IP packets (TUN mode, docs/protocol.md §10)

    /// Who takes the IP packets that arrive on a UDP channel (PACKET messages); PACKET frames on the
    /// TCP channel reach the session's delegate, which hands them to the same place.
    public var packetReceiver: ((ByteBuffer) -> Void)?

    /// Sends one IP packet: sealed on the UDP channel while one is up, else as a PACKET frame on the
    /// TCP channel if it can take it now (§9.9: one path per packet). False when it was dropped.
    @discardableResult
    public func sendPacket(_ packet: ByteBuffer) -> Bool {
        let time = now()
        if let channel = upChannel(at: time) {
            if case .send(let datagram, let to) = channel.machine.seal(.packet(packet), now: time) {
                transmit?(datagram, to)
                if channel.machine.probeDue { tick() }
                return true
            }
        }
        guard let tcp = fallback as? TunnelDatagramPath else { return false }
        return tcp.sendPacket(packet)
    }

    public func attach(portID: UInt32, _ receiver: DatagramPathReceiver) {
        receivers[portID] = WeakReceiver(receiver: receiver)
        fallback.attach(portID: portID, receiver)
    }

    public func detach(portID: UInt32) {
        receivers[portID] = nil
        fallback.detach(portID: portID)
    }
}
