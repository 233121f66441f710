import Logging
import NIOConcurrencyHelpers
import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// Connected mediators by name. A live mediator keeps its name: a second session that proves the
/// secret for a held name waits while the holder is asked to answer a keepalive within
/// `probeTimeout`; if it answers, the newcomer is refused ("name in use"), if not, the holder's
/// session ends and the newcomer takes its place — its ports freed, forwards attached to the new one
/// by themselves. The decisions are `NameClaims`'; this class performs them.
///
/// Lives on the server's control loop; links live on their sessions' loops (`--threads`), so what it
/// asks of a link (probe, GOAWAY) hops there, and what a link tells it hops here (`onControlLoop`).
public final class MediatorRegistry {
    /// The control loop (set by `ServerService`); nil: the caller's loop is the only one (tests).
    var eventLoop: EventLoop?
    /// `links` as of the last change, for `link(_:)` on a session's loop: a forward's accepted
    /// connection looks its mediator up once (one uncontended lock per connection, none per packet).
    private let published = NIOLockedValueBox<[String: MediatorLink]>([:])
    /// The sessions holding each name (the connected mediators).
    public private(set) var links: [String: MediatorLink] = [:]
    public let events: EventLog
    private var logger: Logger
    /// Forwards and others that act when a mediator comes or goes.
    private var observers: [(MediatorLink) -> Void] = []
    /// Mediators connected at once. One session per name.
    var maxMediators = 1024
    /// UDP channel datagrams to the service port that named no established session (set by
    /// `ServerService`), shown beside each mediator's channel counters.
    var unroutedDatagrams: () -> UInt64 = { 0 }
    /// The limits of UDP relays made through the admin API (`ctl redirect --to`), as the forwards'
    /// (set by `ServerService`).
    var udpFlowLimits = DatagramFlowLimits()
    /// TUN mode, for the admin API's view of each mediator (nil when off).
    var tunMode: ServerTunMode?
    /// How long a holder has to answer the keepalive when another session claims its name.
    var probeTimeout: TimeAmount = .seconds(3)
    /// Sessions admitted per name since the server started (for status and metrics: a name seen
    /// once stays listed, disconnected, and its reconnects are this less one).
    private(set) var sessionsByName: [String: UInt64] = [:]
    private var claims = NameClaims<ObjectIdentifier>()
    /// Every session `claims` knows of: holders and newcomers waiting on a holder's answer.
    private var claimants: [ObjectIdentifier: MediatorLink] = [:]

    init(events: EventLog, logger: Logger) {
        self.events = events
        self.logger = logger
    }

    public func link(_ name: String) -> MediatorLink? {
        let found = eventLoop.map { !$0.inEventLoop } == true ? published.withLockedValue { $0[name] } : links[name]
        guard let l = found, l.isOpen else { return nil }
        return l
    }

    /// `link(name)` when its session runs on the caller's loop: for front ends whose socket is on one
    /// loop (a `udp:` forward's socket, a SOCKS5 connection, what `LoopPinning` keeps on the control
    /// loop); a session elsewhere counts as not connected there (it has just moved, or is on its way).
    func localLink(_ name: String) -> MediatorLink? {
        guard let l = link(name), l.eventLoop.inEventLoop else { return nil }
        return l
    }

    /// The open links now, from any loop.
    var openLinks: [MediatorLink] {
        let all = eventLoop.map { !$0.inEventLoop } == true ? Array(published.withLockedValue { $0.values }) : Array(links.values)
        return all.filter(\.isOpen)
    }

    /// Runs `f` on the control loop: at once when already there.
    func onControlLoop(_ f: @escaping () -> Void) {
        if let loop = eventLoop, !loop.inEventLoop { loop.execute(f) } else { f() }
    }

    private func setLink(_ name: String, _ link: MediatorLink?) {
        links[name] = link
        published.withLockedValue { $0[name] = link }
    }

    /// Called for every mediator that attaches, now and later.
    public func whenAttached(_ f: @escaping (MediatorLink) -> Void) {
        observers.append(f)
    }

    /// `link` proved the secret for its name.
    func attach(_ link: MediatorLink) {
        let name = link.name
        if links[name] == nil, links.count >= maxMediators {
            let from = link.session.remoteAddress?.display ?? "?"
            logger.warning("mediator '\(name)' from \(from) turned away: \(links.count) mediators connected (--max-mediators)")
            events.post(ServerEvent(mediator: name, kind: "refused", detail: "server full (\(maxMediators) mediators)"))
            let most = maxMediators
            link.onLoop { link.session.goAway(.limitExceeded, "server full: \(most) mediators are connected (--max-mediators)") }
            return
        }
        claimants[ObjectIdentifier(link)] = link
        perform(claims.claim(name, by: ObjectIdentifier(link)), name: name)
    }

    /// A PONG that answered this link's probe: it is alive.
    func answered(_ link: MediatorLink) {
        perform(claims.answered(link.name, by: ObjectIdentifier(link)), name: link.name)
    }

    func detach(_ link: MediatorLink, _ end: SessionEnd) {
        guard link.info != nil else { return }
        let name = link.name
        claimants[ObjectIdentifier(link)] = nil
        if links[name] === link {
            setLink(name, nil)
            logger.info("mediator '\(name)' disconnected: \(end)")
            events.post(ServerEvent(mediator: name, kind: "disconnected", detail: end.description))
            if claims.waiting[name] != nil {
                logger.warning("mediator '\(name)': the previous session is gone; the session waiting for the name replaces it")
                events.post(ServerEvent(mediator: name, kind: "replaced", detail: "a newer session replaces one that did not answer"))
            }
        }
        perform(claims.ended(name, ObjectIdentifier(link)), name: name)
    }

    private func perform(_ actions: [NameClaims<ObjectIdentifier>.Action], name: String) {
        for action in actions {
            switch action {
            case .admit(let id):
                guard let link = claimants[id] else { continue }
                admit(link)
            case .probe(let holderID):
                guard let holder = claimants[holderID], let newcomer = claims.waiting[name].flatMap({ claimants[$0] }) else { continue }
                logger.warning(
                    "mediator '\(name)' from \(newcomer.from) proved the secret, but '\(name)' is connected from \(holder.from): asking that session to answer a keepalive within \(probeTimeout.seconds) s"
                )
                let timeout = probeTimeout
                holder.onLoop { holder.session.probe(timeout: timeout) }
            case .refuse(let id, let holderID):
                guard let newcomer = claimants[id] else { continue }
                let holder = claimants[holderID]?.from ?? "?"
                logger.warning("mediator '\(name)' from \(newcomer.from) refused: name in use by the live session from \(holder)")
                events.post(
                    ServerEvent(mediator: name, kind: "refused", detail: "name in use: a session from \(newcomer.from) was refused"))
                newcomer.onLoop {
                    newcomer.session.goAway(
                        .addressInUse,
                        "name in use: mediator '\(name)' is connected and answers keepalives (one session per name; if this is not that mediator, give each mediator its own secret)"
                    )
                }
            }
        }
    }

    private func admit(_ link: MediatorLink) {
        let name = link.name
        if let old = links[name], old !== link {
            // Not expected (the holder's end admits the newcomer), but never keep two sessions.
            old.onLoop { old.session.goAway(.replaced, "replaced by a newer session of the same mediator") }
        }
        setLink(name, link)
        // First on its loop: WELCOME goes out ahead of any request an observer sends now.
        link.onLoop { link.session.admit() }
        sessionsByName[name, default: 0] &+= 1
        logger.info("mediator '\(name)' connected from \(link.from) (session \(link.info?.sessionID ?? 0))")
        events.post(ServerEvent(mediator: name, kind: "connected", detail: "from \(link.from)"))
        for o in observers { o(link) }
    }
}
