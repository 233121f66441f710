import Logging
import NIOCore
import PosternCore
import PosternTunnel
import PosternWire

/// Connected mediators by name. A live mediator keeps its name: a second session that proves the
/// secret for a held name waits while the holder is asked to answer a keepalive within
/// `probeTimeout`; if it answers, the newcomer is refused ("name in use"), if not, the holder's
/// session ends and the newcomer takes its place — its ports freed, forwards attached to the new one
/// by themselves. The decisions are `NameClaims`'; this class performs them.
public final class MediatorRegistry {
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
        guard let l = links[name], l.isOpen else { return nil }
        return l
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
            link.session.goAway(.limitExceeded, "server full: \(maxMediators) mediators are connected (--max-mediators)")
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
            links[name] = nil
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
                holder.session.probe(timeout: probeTimeout)
            case .refuse(let id, let holderID):
                guard let newcomer = claimants[id] else { continue }
                let holder = claimants[holderID]?.from ?? "?"
                logger.warning("mediator '\(name)' from \(newcomer.from) refused: name in use by the live session from \(holder)")
                events.post(
                    ServerEvent(mediator: name, kind: "refused", detail: "name in use: a session from \(newcomer.from) was refused"))
                newcomer.session.goAway(
                    .addressInUse,
                    "name in use: mediator '\(name)' is connected and answers keepalives (one session per name; if this is not that mediator, give each mediator its own secret)"
                )
            }
        }
    }

    private func admit(_ link: MediatorLink) {
        let name = link.name
        if let old = links[name], old !== link {
            // Not expected (the holder's end admits the newcomer), but never keep two sessions.
            old.session.goAway(.replaced, "replaced by a newer session of the same mediator")
        }
        links[name] = link
        sessionsByName[name, default: 0] &+= 1
        logger.info("mediator '\(name)' connected from \(link.from) (session \(link.info?.sessionID ?? 0))")
        events.post(ServerEvent(mediator: name, kind: "connected", detail: "from \(link.from)"))
        for o in observers { o(link) }
    }
}
